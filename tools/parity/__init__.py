"""The official-parity harness (`tools/parity_official.py`): our pipeline and the official TRIBE v2
pipeline side by side on the same clips and random weights, per modality and end to end.

Modules: `stats` (errors, table, verdict; pure), `hfcache` (the hub cache layout; pure),
`venv` (the official virtual environment), `models` (random models + checkpoint), `clips`
(stimuli and word TSVs), `ours` (our pipeline), `official_driver` (runs INSIDE the official venv,
never imports tribe_stream).
"""
