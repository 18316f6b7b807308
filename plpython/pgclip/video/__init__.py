"""Video: decoding in a separate process, sampling frames, cutting segments."""
