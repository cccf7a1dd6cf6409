"""Data: loading slices through dataset plugins, intensity normalisation, split, augmentation.

- :mod:`covseg.data.loading`: ``load_slices(dataset, data, options)`` -> :class:`~covseg.plugins.CTSlices`
- :mod:`covseg.data.intensity`: ``Normalisation`` and ``to_model_input`` (the one place where
  intensities become model input)
- :mod:`covseg.data.split`: ``make_split`` and ``Split`` (saved with each run)
- :mod:`covseg.data.augment`: ``AugmentationConfig`` and ``build_augmentation`` (albumentations)
- :mod:`covseg.data.dataset`: ``SliceDataset`` (in memory) and ``seed_worker``
- :mod:`covseg.data.transforms`: ``resize_pair`` and the other torch-free resizes that training and
  prediction share
- :mod:`covseg.data.nifti`: NIfTI reading/writing and its orientation rule
- :mod:`covseg.data.fetch`: downloading the public MedSeg files
"""
