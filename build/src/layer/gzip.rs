//! gzip on every core: the tar is cut into fixed 1 MiB pieces, each compressed as a gzip
//! member of its own on a worker thread, and the members written in order. Concatenated
//! members are one valid gzip stream (RFC 1952; every gzip reader, Docker's and containerd's
//! included, reads them all), and fixed pieces make the output the same whatever the number
//! of threads, so builds stay reproducible.
//!
//! Compression is most of what a build step costs beyond running its command: Docker and
//! BuildKit keep layers uncompressed until they push, ferry stores them ready to save.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::thread::JoinHandle;

use libdeflater::{CompressionLvl, Compressor};

const PIECE: usize = 1 << 20;

/// Pieces are whole buffers, what libdeflate compresses (it has no streaming interface), and
/// faster and smaller than zlib does. On the tar of a recursive chmod over Python's library
/// (43.7 MB, 1 MiB pieces, one core of this machine): libdeflate level 1 243 MB/s, 32.1% of
/// the size; zlib (zlib-rs) level 1 297 MB/s but 39.6%, level 2 162 MB/s 33.1%, level 6
/// 82 MB/s 30.1%; libdeflate level 6 104 MB/s 29.4%. Compressing is the heaviest work a
/// build does of its own (Docker and BuildKit keep layers uncompressed until they push):
/// level 1.
const LEVEL: i32 = 1;

/// A piece whose samples do not shrink below this share of their size (already compressed
/// data: archives, images, packages) is stored, not compressed: deflate's search finds
/// nothing in it and costs as much as on text (level 4: 42 MB/s on random bytes here,
/// storing runs at memory speed).
const INCOMPRESSIBLE_PERCENT: usize = 98;
/// Samples taken from each piece: their count and size.
const SAMPLES: usize = 4;
const SAMPLE: usize = 16 << 10;

/// Whether a piece is stored rather than compressed: every sample of it is incompressible
/// (`probe` compresses at [`LEVEL`]). It depends on the piece's bytes alone, so builds stay
/// reproducible.
fn incompressible(piece: &[u8], probe: &mut Compressor) -> bool {
    if piece.len() < SAMPLES * SAMPLE {
        return false;
    }
    let stride = piece.len() / SAMPLES;
    let mut out = vec![0u8; probe.deflate_compress_bound(SAMPLE)];
    (0..SAMPLES).all(|i| {
        let sample = &piece[i * stride..i * stride + SAMPLE];
        matches!(probe.deflate_compress(sample, &mut out),
            Ok(n) if n * 100 >= sample.len() * INCOMPRESSIBLE_PERCENT)
    })
}

fn compressor(level: i32) -> Compressor {
    Compressor::new(CompressionLvl::new(level).expect("libdeflate knows levels 0 to 12"))
}

/// One piece as a gzip member: at [`LEVEL`], or stored when it is incompressible.
fn member(piece: &[u8]) -> io::Result<Vec<u8>> {
    let mut c = compressor(LEVEL);
    if incompressible(piece, &mut c) {
        c = compressor(0);
    }
    let mut out = vec![0u8; c.gzip_compress_bound(piece.len())];
    let n = c
        .gzip_compress(piece, &mut out)
        .map_err(|e| io::Error::other(format!("gzip: {e:?}")))?;
    out.truncate(n);
    Ok(out)
}

/// A gzip writer compressing pieces in parallel.
pub struct ParallelGzip<W: Write> {
    inner: W,
    buf: Vec<u8>,
    running: VecDeque<JoinHandle<io::Result<Vec<u8>>>>,
    threads: usize,
}

impl<W: Write> ParallelGzip<W> {
    /// A writer into `inner`.
    pub fn new(inner: W) -> Self {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        ParallelGzip {
            inner,
            buf: Vec::with_capacity(PIECE),
            running: VecDeque::new(),
            threads,
        }
    }

    fn submit(&mut self) -> io::Result<()> {
        let piece = std::mem::replace(&mut self.buf, Vec::with_capacity(PIECE));
        while self.running.len() >= self.threads * 2 {
            self.write_oldest()?;
        }
        self.running
            .push_back(std::thread::spawn(move || member(&piece)));
        Ok(())
    }

    fn write_oldest(&mut self) -> io::Result<()> {
        if let Some(h) = self.running.pop_front() {
            let member = h
                .join()
                .map_err(|_| io::Error::other("a compression thread panicked"))??;
            self.inner.write_all(&member)?;
        }
        Ok(())
    }

    /// Compresses what is left, writes every member and returns the inner writer. An empty
    /// input still gives one (empty) member: a valid gzip file.
    pub fn finish(mut self) -> io::Result<W> {
        if !self.buf.is_empty() || self.running.is_empty() {
            self.submit()?;
        }
        while !self.running.is_empty() {
            self.write_oldest()?;
        }
        Ok(self.inner)
    }
}

impl<W: Write> Write for ParallelGzip<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(PIECE - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == PIECE {
            self.submit()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    /// Bytes that deflate cannot shrink (xorshift).
    fn noise(len: usize) -> Vec<u8> {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn incompressible_pieces_are_stored_and_read_back() {
        let text: Vec<u8> = (0..PIECE).map(|i| b"layer text "[i % 11]).collect();
        let mut probe = compressor(LEVEL);
        assert!(!incompressible(&text, &mut probe));
        let random = noise(PIECE);
        assert!(incompressible(&random, &mut probe));
        // Random bytes with text after them (a small archive next to sources): compressed.
        let mut mixed = noise(PIECE / 2);
        mixed.extend_from_slice(&text[..PIECE / 2]);
        assert!(!incompressible(&mixed, &mut probe));
        let mut data = random.clone();
        data.extend_from_slice(&text);
        let mut gz = ParallelGzip::new(Vec::new());
        gz.write_all(&data).unwrap();
        let out = gz.finish().unwrap();
        // The stored piece costs a few bytes of framing; the text piece shrinks.
        assert!(out.len() < PIECE + PIECE / 10, "{}", out.len());
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&out[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn members_read_back_as_one_stream_and_do_not_depend_on_threads() {
        let data: Vec<u8> = (0..3 * PIECE + 123).map(|i| (i % 251) as u8).collect();
        let compress = |threads: usize| {
            let mut gz = ParallelGzip::new(Vec::new());
            gz.threads = threads;
            gz.write_all(&data).unwrap();
            gz.finish().unwrap()
        };
        let one = compress(1);
        assert_eq!(one, compress(4));
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&one[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
        let empty = ParallelGzip::new(Vec::new()).finish().unwrap();
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&empty[..])
            .read_to_end(&mut out)
            .unwrap();
        assert!(out.is_empty());
    }
}
