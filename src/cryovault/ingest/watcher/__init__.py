"""The ingest watcher agent (`cryovault watch epu|tomo`, SPEC SPA-1, ET-1).

It runs next to the microscope's storage and sends every file of an acquisition session to the
server's ingest API once it is completely written, in an order that lets the server build items
as early as possible. Modules: `scanning` (incremental folder scans), `stability` (size/mtime
settling), `frames` (movie frame counts from the file structure), `atlas` (EPU atlas path
mapping), `epu` / `tomo` (the instruments' layouts), `client` (HTTP, retries), `state` (local
memory), `agent` (the loop), `cli` (the command).
"""
