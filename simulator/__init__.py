"""Deterministic simulator of the county's native feeds (`pingan simulate`).

`model` holds the world (device registry, population, grid workers), `scenarios` the ground-truth
incidents and the background day model, `formats` renders native payloads, `writer` streams them
to disk with a truth file and a delivery manifest, `sender` replays them to running receivers.
"""
