//! Checking: the verifier hashes each layer in archive order as its bytes arrive and compares
//! it with its digest; the checksummer hashes the whole archive for `FILE.sha256`, but only up
//! to the last verified layer. Both read the bytes back from the page cache, once: the verifier
//! hands every piece it read on to the checksummer. Hashing so overlaps the download instead of
//! following it, which on a fast link halves the wall time.

use std::sync::mpsc::{Receiver, SyncSender};

use ferry_oci::digest::{Digest, Hasher};

use crate::partial::PartHasher;

use super::Transfer;
use crate::error::FetchError;

/// Bytes the verifier reads at a time and hands to the checksummer.
const PIECE: u64 = 1 << 20;
/// Pieces between verifier and checksummer: bounds memory, lets each run ahead a little.
pub(super) const PIECES_IN_FLIGHT: usize = 8;

/// Layer bytes on their way from the verifier to the checksummer.
pub(super) enum Piece {
    /// Bytes at an archive offset; offsets only grow.
    Bytes { offset: u64, data: Vec<u8> },
    /// A layer is being fetched again: what was handed over so far cannot be trusted.
    Invalidate,
}

impl Transfer<'_> {
    /// Hashes every layer in archive order as its bytes arrive, and checks its digest. Each
    /// piece it reads is handed on to the checksummer, so the archive is read back only once.
    pub(super) fn verifier(
        &self,
        pieces: SyncSender<Piece>,
        spare: Receiver<Vec<u8>>,
    ) -> Result<(), FetchError> {
        for (l, layer) in self.layers.iter().enumerate() {
            let mut refetched = false;
            loop {
                let mut hasher = Hasher::for_digest(&layer.blob.digest).map_err(|source| {
                    FetchError::Verify {
                        what: self.what(l),
                        host: layer.registry.host().to_string(),
                        source: Box::new(source),
                    }
                })?;
                let mut pos = 0;
                while pos < layer.blob.size {
                    let end = {
                        let mut st = self.lock();
                        loop {
                            if self.stopped() {
                                return Ok(());
                            }
                            let end = self.contiguous_end(&st, l, pos);
                            if end > pos {
                                break end;
                            }
                            st = self.changed.wait(st).expect("transfer state");
                        }
                    };
                    while pos < end {
                        let n = PIECE.min(end - pos) as usize;
                        let mut buf = spare.try_recv().unwrap_or_default();
                        buf.resize(n, 0);
                        self.part.read_at(layer.offset + pos, &mut buf)?;
                        hasher.update(&buf);
                        let piece = Piece::Bytes {
                            offset: layer.offset + pos,
                            data: buf,
                        };
                        if pieces.send(piece).is_err() {
                            return Ok(());
                        }
                        pos += n as u64;
                    }
                }
                match hasher.verify(&layer.blob.digest, Some(layer.blob.size)) {
                    Ok(()) => break,
                    Err(_) if self.lock().blobs[l].resumed && !refetched => {
                        // Bytes from an earlier run did not survive (a crash before they
                        // reached the disk), or an earlier archive changed: fetch this blob
                        // from the registry once more before giving up.
                        tracing::debug!(digest = %layer.blob.digest, "resumed blob did not verify, fetching it again");
                        refetched = true;
                        let _ = pieces.send(Piece::Invalidate);
                        self.part.forget(&layer.blob.digest)?;
                        let mut st = self.lock();
                        st.blobs[l].reset();
                        if let Some(id) = st.blobs[l].id {
                            self.reporter.on_blob_restart(id, layer.blob.size);
                        }
                        drop(st);
                        self.changed.notify_all();
                    }
                    Err(source) => {
                        return Err(FetchError::Verify {
                            what: self.what(l),
                            host: layer.registry.host().to_string(),
                            source: Box::new(source),
                        });
                    }
                }
            }
            self.part.mark_complete(&layer.blob.digest)?;
            let mut st = self.lock();
            if let Some(id) = st.blobs[l].id {
                self.reporter.on_blob_done(id);
            }
            st.verified = l + 1;
            if st.verified == self.layers.len() {
                st.finished = true;
                tracing::debug!(
                    elapsed_ms = self.started.elapsed().as_millis(),
                    "every layer verified"
                );
            }
            drop(st);
            self.changed.notify_all();
        }
        Ok(())
    }

    /// Hashes the archive front to back (one digest per part of a split archive): layer bytes
    /// as the verifier hands them over, the rest (headers, metadata, padding) read from the
    /// file. Bytes of a layer that fails
    /// verification and is fetched again were hashed in vain: the archive is then hashed anew
    /// from the file at the end (a rare path: only resumed or reused blobs are refetched).
    pub(super) fn checksummer(
        &self,
        pieces: Receiver<Piece>,
        spare: SyncSender<Vec<u8>>,
        total_len: u64,
    ) -> Result<Vec<Digest>, FetchError> {
        let ends = self.part.part_ends();
        debug_assert_eq!(ends.last(), Some(&total_len));
        let mut hasher = PartHasher::new(ends.clone());
        let mut buf = vec![0u8; PIECE as usize];
        let mut pos = 0;
        let mut invalid = false;
        for piece in pieces {
            match piece {
                Piece::Invalidate => invalid = true,
                Piece::Bytes { offset, data } => {
                    if !invalid {
                        self.part
                            .hash_range(pos, offset - pos, &mut hasher, &mut buf)?;
                        hasher.update(&data);
                        pos = offset + data.len() as u64;
                    }
                    let _ = spare.try_send(data);
                }
            }
        }
        if self.stopped() {
            return Err(FetchError::Interrupted);
        }
        if invalid {
            hasher = PartHasher::new(ends);
            pos = 0;
        }
        self.part
            .hash_range(pos, total_len - pos, &mut hasher, &mut buf)?;
        tracing::debug!(
            elapsed_ms = self.started.elapsed().as_millis(),
            "archive checksummed"
        );
        Ok(hasher.finish())
    }
}
