//! `ferry save`: images of the store back into the archive `ferry fetch` writes, planned by
//! the same [`ArchivePlan`], so the blobs (and every digest) are exactly those loaded.

use std::fs::File;
use std::io::{self, Read, Write};

use ferry_oci::archive::{ArchivePlan, BlobRef, BlobSource, ImageRecord, write_archive};

use crate::error::StoreError;
use crate::store::Store;
use crate::store::index::Catalog;

impl BlobSource for Store {
    fn open(&self, blob: &BlobRef) -> io::Result<Box<dyn Read + '_>> {
        let path = self.blob_path(&blob.digest);
        let f = File::open(&path).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot open {}: {e}", path.display()))
        })?;
        Ok(Box::new(io::BufReader::with_capacity(1024 * 1024, f)))
    }
}

impl Store {
    /// The archive plan for `references` (names or IDs). An image named by name carries that
    /// name (`RepoTags`, index.json annotations); one given by ID carries none, as with
    /// `docker save ID`.
    pub fn save_plan(&self, references: &[String]) -> Result<ArchivePlan, StoreError> {
        let catalog = Catalog::read(&self.root)?;
        let mut records = Vec::new();
        for r in references {
            let found = catalog.find(r)?;
            let facts = catalog.manifest(&found.manifest)?;
            let platform = catalog.config(&facts.config.digest)?.platform;
            records.push(ImageRecord {
                reference: found.name.clone(),
                manifest: facts.manifest.clone(),
                platform: Some(platform),
                config: facts.config.clone(),
                layers: facts.layers.clone(),
                index: None,
            });
        }
        Ok(ArchivePlan::new(records))
    }

    /// Writes the archive of `references` to `out`, holding the shared lock so no blob goes
    /// away midway.
    pub fn save(
        &self,
        references: &[String],
        out: &mut dyn Write,
    ) -> Result<ArchivePlan, StoreError> {
        let _lock = self.lock_shared()?;
        let plan = self.save_plan(references)?;
        write_archive(&plan, self, out).map_err(StoreError::io("write the archive", "-"))?;
        Ok(plan)
    }
}
