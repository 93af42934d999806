"""Jobs: records of long actions, their visibility (JOB-2) and the runner that executes them."""
