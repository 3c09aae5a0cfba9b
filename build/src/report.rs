//! What a build tells its caller while it runs, in the order Docker's classic builder prints
//! it: `Step 2/4 : COPY hello.sh /usr/local/bin`, ` ---> Using cache`, ` ---> Running in …`,
//! the command's output, `Removing intermediate container …`, ` ---> 3f1a…`.

use ferry_oci::Digest;

/// Receives a build's progress.
pub trait Reporter {
    /// A step begins (`index` from 1).
    fn step(&mut self, index: usize, total: usize, text: &str);
    /// The step's result came from the cache.
    fn cached(&mut self);
    /// The step runs in this container.
    fn running(&mut self, container: &str);
    /// The step's command wrote this.
    fn output(&mut self, bytes: &[u8]);
    /// The step's container was removed.
    fn removed(&mut self, container: &str);
    /// The step ended with this image.
    fn image(&mut self, id: &Digest);
    /// Something worth saying (`[Warning] …`, `# Executing 1 build trigger`).
    fn notice(&mut self, text: &str);
}

/// A reporter that drops everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl Reporter for Silent {
    fn step(&mut self, _: usize, _: usize, _: &str) {}
    fn cached(&mut self) {}
    fn running(&mut self, _: &str) {}
    fn output(&mut self, _: &[u8]) {}
    fn removed(&mut self, _: &str) {}
    fn image(&mut self, _: &Digest) {}
    fn notice(&mut self, _: &str) {}
}
