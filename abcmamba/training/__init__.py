"""The pieces of train.py's Accelerate loop, one idea per module.

``config`` (TrainConfig and its flags), ``data`` (tunes packed into blocks),
``model`` (model and optimizer), ``schedule`` (steps, learning rate, time
budget), ``checkpoints`` (save_state / resume) and ``final`` (validation bpc,
samples and the ``final`` folder).  train.py holds the loop itself.
"""
