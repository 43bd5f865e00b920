"""Images in: the one loader (safe decoding, pixel budget, finding image files and class folders), face
detection, the offline sample generator and the Kaggle datasets."""
