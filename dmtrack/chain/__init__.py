"""The reproduction chain: what runs, where and when (`dmtrack report`).

graph.py (steps, keys, stamps, the GPU pool; knows nothing of DMTrack), plan.py (a profile's settings
and steps), steps.py (what each notebook does), preflight.py, estimate.py, pipeline.py (`reproduce`,
`plan_estimate`) and cli.py. It renders the report with dmtrack.report, which never imports it.
"""
