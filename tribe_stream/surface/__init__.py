"""The cortex to draw on: fsaverage5 meshes (nilearn's bundled data), colour mapping, views."""
