//! Archive → verify → store → layer snapshots. (Skeleton: filled in by the `ferry load` issue.)
