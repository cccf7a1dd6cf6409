"""Data: loading slices through dataset plugins, intensity normalisation, split, augmentation.

- :mod:`covseg.data.loading`: ``load_slices(dataset, data, options)`` -> :class:`~covseg.plugins.CTSlices`
- :mod:`covseg.data.intensity`: ``Normalisation`` and ``to_model_input`` (the one place where
  intensities become model input)
- :mod:`covseg.data.split`: ``make_split`` and ``Split`` (saved with each run)
- :mod:`covseg.data.augment`: ``AugmentationConfig`` and ``build_augmentation`` (albumentations)
- :mod:`covseg.data.dataset`: ``SliceDataset`` (in memory) and ``seed_worker``
- :mod:`covseg.data.transforms`: ``resize_pair`` and the other torch-free resizes that training and
  prediction share
- :mod:`covseg.data.interpret`: ``interpret_intensities``, the one decision of what stored values
  mean (Hounsfield units or 8-bit grey levels), NaN handling and the options ``intensity``,
  ``hu_offset``, ``nan``
- :mod:`covseg.data.slice_files`: ``read_image`` and ``read_mask``, one 2-D slice file of any format
- :mod:`covseg.data.labels`: stored mask values and one-hot masks to labels 0..3
- :mod:`covseg.data.nifti`: NIfTI reading (header checks, voxel sizes in mm) and label-map writing
- :mod:`covseg.data.orientation`: the orientation rule, ``Reorientation`` (stored volume <-> the
  LPS display the models are trained in, by flips and axis swaps)
- :mod:`covseg.data.dicom`: DICOM CT series (pydicom, ``covseg[dicom]``): ``scan_series``,
  ``choose_series``, ``read_series`` (ordered along the normal, HU, spacing and affine)
- :mod:`covseg.data.fetch`: downloading the public MedSeg files
"""
