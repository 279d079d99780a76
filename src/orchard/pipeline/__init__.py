"""The featurization pipeline, room by room: config, load, preprocess, models, featurize, reduce, write, record, run."""
