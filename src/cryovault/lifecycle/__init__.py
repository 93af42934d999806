"""Job handlers of the data lifecycle (SPEC JOB-3 … JOB-6): archive and restore, export,
cleanup. Importing a module registers its handlers with the job runner."""
