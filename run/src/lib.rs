//! Store → rootfs → namespaces → exec. (Skeleton: filled in by the `ferry run` issue.)
