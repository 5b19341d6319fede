"""Batch matching of pair lists (`coarse-loftr match-pairs`): an hloc pairs file in,
`matches.h5` (one group per pair) out, in this process or on Ray actors, and a COLMAP
database built from it for structure from motion.

    pairs.py   the pairs file, pair keys
    store.py   matches.h5 (h5py): write, resume, read back
    runner.py  one pair matched and fitted; the in-process loop
    ray_pool.py  the same on Ray actors, with a bounded number of pairs in flight
    colmap.py  per-image keypoints merged on a grid, matches, two-view geometries (pycolmap)

h5py, pycolmap and ray come with the `distributed` extra; nothing here is imported by the
rest of `coarse_loftr.inference`.
"""
