"""The imaging core: CT and label I/O with geometry, the label schema, preprocessing as the
method needs it (with its exact inverse), metrics, and the synthetic cohort.

Plain NumPy/SciPy/nibabel/pydicom, no torch: every service can use it, including the slim ones.
"""
