//! A small pool of threads that create the non-directory entries of layers, so that the
//! metadata operations of many small files overlap: on a busy or freshly-emptied disk each
//! `open(O_CREAT)` waits on the filesystem far longer than it computes.
//!
//! Order is kept where it matters and nowhere else. Every entry goes to the lane its path
//! hashes to, and a lane runs its entries in the order they were handed out, so two entries of
//! the same path (a file replaced by a symlink, say) are created in tar order. Entries of
//! different paths do not depend on each other, except through directories and hard links,
//! which the applier's thread handles itself after waiting for the lanes involved
//! (`Lanes::flush_path`, `Lanes::flush_all`). Entries travel in batches, so that handing
//! one over costs no system call of its own. Memory is bounded: a lane queues a few batches,
//! and the file data in flight is capped in bytes.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use super::node::{Content, Node};
use crate::error::LayerError;

/// Batches a lane queues before the applier waits.
const QUEUE: usize = 4;
/// Entries per batch.
const BATCH: usize = 32;
/// File data per batch.
const BATCH_BYTES: u64 = 1024 * 1024;
/// File data in flight, all lanes together.
const BYTES_IN_FLIGHT: u64 = 16 * 1024 * 1024;

/// The pool: one thread per lane, shared by every layer of a load.
pub struct Writers {
    lanes: Vec<Lane>,
    /// Bytes of file data handed out and not yet written.
    budget: Arc<Counter>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

struct Lane {
    /// The queue and the number of batches ever sent to it (each batch's ticket).
    queue: Mutex<(Option<SyncSender<Batch>>, u64)>,
    /// Batches this lane finished.
    done: Arc<Counter>,
}

struct Batch {
    nodes: Vec<Node>,
    bytes: u64,
    layer: Arc<LayerState>,
}

/// A count that threads can wait on; waking costs a system call only when one does.
#[derive(Default)]
struct Counter {
    /// The value, and how many threads wait for it to change.
    state: Mutex<(u64, usize)>,
    changed: Condvar,
}

impl Counter {
    fn update(&self, f: impl FnOnce(&mut u64)) {
        let mut s = self.state.lock().expect("counter lock");
        f(&mut s.0);
        if s.1 > 0 {
            self.changed.notify_all();
        }
    }

    fn wait_until(&self, ok: impl Fn(u64) -> bool) {
        let mut s = self.state.lock().expect("counter lock");
        while !ok(s.0) {
            s.1 += 1;
            s = self.changed.wait(s).expect("counter lock");
            s.1 -= 1;
        }
    }
}

/// What a layer's entries on the pool reported.
#[derive(Default)]
struct LayerState {
    failed: AtomicBool,
    error: Mutex<Option<LayerError>>,
}

impl LayerState {
    fn fail(&self, e: LayerError) {
        let mut slot = self.error.lock().expect("error lock");
        if slot.is_none() {
            *slot = Some(e);
        }
        self.failed.store(true, Ordering::Release);
    }
}

impl Writers {
    /// A pool of `threads` lanes.
    pub fn new(threads: usize) -> Arc<Writers> {
        let mut lanes = Vec::new();
        let mut handles = Vec::new();
        let budget = Arc::new(Counter::default());
        for i in 0..threads.max(1) {
            let (tx, rx) = sync_channel::<Batch>(QUEUE);
            let done = Arc::new(Counter::default());
            let budget = budget.clone();
            lanes.push(Lane {
                queue: Mutex::new((Some(tx), 0)),
                done: done.clone(),
            });
            let handle = std::thread::Builder::new()
                .name(format!("ferry-writer-{i}"))
                .spawn(move || {
                    for Batch {
                        nodes,
                        bytes,
                        layer,
                    } in rx
                    {
                        for node in nodes {
                            if !layer.failed.load(Ordering::Acquire)
                                && let Err(e) = node.create()
                            {
                                layer.fail(e);
                            }
                        }
                        budget.update(|b| *b -= bytes);
                        done.update(|d| *d += 1);
                    }
                })
                .expect("spawn a writer thread");
            handles.push(handle);
        }
        Arc::new(Writers {
            lanes,
            budget,
            threads: Mutex::new(handles),
        })
    }

    /// The default pool: a few more lanes than cores, since lanes mostly wait.
    pub fn for_this_machine() -> Arc<Writers> {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Writers::new((cores * 2).clamp(2, 8))
    }
}

impl Drop for Writers {
    fn drop(&mut self) {
        for lane in &self.lanes {
            lane.queue.lock().expect("queue lock").0 = None;
        }
        for t in self.threads.lock().expect("threads lock").drain(..) {
            let _ = t.join();
        }
    }
}

/// One layer's way to create entries: on the pool, or on the applier's own thread.
pub(super) struct Lanes {
    pool: Option<Arc<Writers>>,
    state: Arc<LayerState>,
    /// Per lane, the ticket of this layer's last batch sent.
    sent: Vec<u64>,
    /// Per lane, the batch being filled, and its bytes.
    filling: Vec<(Vec<Node>, u64)>,
}

impl Lanes {
    /// Entries are created right away, on the calling thread.
    pub fn inline() -> Lanes {
        Lanes {
            pool: None,
            state: Arc::default(),
            sent: Vec::new(),
            filling: Vec::new(),
        }
    }

    /// Entries are created by `pool`.
    pub fn pooled(pool: Arc<Writers>) -> Lanes {
        let n = pool.lanes.len();
        Lanes {
            pool: Some(pool),
            state: Arc::default(),
            sent: vec![0; n],
            filling: (0..n).map(|_| (Vec::new(), 0)).collect(),
        }
    }

    fn lane_of(&self, path: &[Vec<u8>]) -> usize {
        let mut h = DefaultHasher::new();
        path.hash(&mut h);
        (h.finish() % self.sent.len() as u64) as usize
    }

    /// Creates `node` (whose full path is `path`), now or on its lane.
    pub fn run(&mut self, path: &[Vec<u8>], node: Node) -> Result<(), LayerError> {
        if self.pool.is_none() {
            return node.create();
        }
        self.check()?;
        let bytes = match &node.content {
            Content::File(d) => d.len() as u64,
            _ => 0,
        };
        let i = self.lane_of(path);
        let batch = &mut self.filling[i];
        batch.0.push(node);
        batch.1 += bytes;
        if batch.0.len() >= BATCH || batch.1 >= BATCH_BYTES {
            self.send(i)?;
        }
        Ok(())
    }

    /// Hands lane `i` the batch being filled.
    fn send(&mut self, i: usize) -> Result<(), LayerError> {
        let Some(pool) = self.pool.clone() else {
            return Ok(());
        };
        let (nodes, bytes) = std::mem::take(&mut self.filling[i]);
        if nodes.is_empty() {
            return Ok(());
        }
        pool.budget
            .wait_until(|used| used == 0 || used + bytes <= BYTES_IN_FLIGHT);
        pool.budget.update(|b| *b += bytes);
        let lane = &pool.lanes[i];
        let mut q = lane.queue.lock().expect("queue lock");
        let tx = q.0.as_ref().expect("the pool lives while layers use it");
        let batch = Batch {
            nodes,
            bytes,
            layer: self.state.clone(),
        };
        if tx.send(batch).is_err() {
            pool.budget.update(|b| *b -= bytes);
            return Err(gone());
        }
        q.1 += 1;
        self.sent[i] = q.1;
        Ok(())
    }

    /// Waits until every entry this layer handed out for `path` is created.
    pub fn flush_path(&mut self, path: &[Vec<u8>]) -> Result<(), LayerError> {
        if self.pool.is_some() {
            let i = self.lane_of(path);
            self.send(i)?;
            self.wait_lane(i);
        }
        self.check()
    }

    /// Waits until every entry this layer handed out is created.
    pub fn flush_all(&mut self) -> Result<(), LayerError> {
        for i in 0..self.sent.len() {
            self.send(i)?;
        }
        for i in 0..self.sent.len() {
            self.wait_lane(i);
        }
        self.check()
    }

    fn wait_lane(&self, i: usize) {
        let Some(pool) = &self.pool else { return };
        let want = self.sent[i];
        pool.lanes[i].done.wait_until(|done| done >= want);
    }

    /// The first error of an entry created on the pool, once.
    fn check(&self) -> Result<(), LayerError> {
        if !self.state.failed.load(Ordering::Acquire) {
            return Ok(());
        }
        Err(self
            .state
            .error
            .lock()
            .expect("error lock")
            .take()
            .unwrap_or_else(gone))
    }
}

impl Drop for Lanes {
    fn drop(&mut self) {
        // Nothing of this layer may still be written once its applier is gone (its snapshot
        // may be removed next).
        self.state.failed.store(true, Ordering::Release);
        self.filling.clear();
        for i in 0..self.sent.len() {
            self.wait_lane(i);
        }
    }
}

fn gone() -> LayerError {
    LayerError::Io {
        action: "write",
        entry: "(layer)".into(),
        source: std::io::Error::other("the layer failed earlier"),
    }
}
