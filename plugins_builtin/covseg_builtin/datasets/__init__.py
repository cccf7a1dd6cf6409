"""Built-in data sets, one module per format: medseg.py (MedSeg NIfTI volumes), folder.py (images/
and masks/ of 2-D slices), phantom.py (the embedded synthetic chest CT)."""
