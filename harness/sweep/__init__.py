"""Studies: a plan file (harness/sweep/plan.py) expanded into align and eval jobs (jobs.py), run on this machine
or on a Ray cluster (launch.py), resumable, with the report written at the end (`harness sweep`)."""
