"""LightningDataModules of gram-lightning: puzzle generation, CSV readers, caching and augmentation."""
