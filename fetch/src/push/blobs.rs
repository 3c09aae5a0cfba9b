//! Getting every blob into every repository that needs it, on a pool of workers: skipped when
//! the repository has it, mounted when another repository of the registry does, uploaded
//! otherwise. One task per digest, so a blob several images share is uploaded once and mounted
//! into the other repositories.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use ferry_oci::archive::BlobRef;

use super::mounts::MountRecord;
use super::upload::Uploader;
use super::{Action, BlobReader, PushError, PushImage, PushOptions};
use crate::registry::{Registry, Started};
use crate::reporter::Reporter;

/// One blob and the repositories that need it.
pub(super) struct Task {
    blob: BlobRef,
    repos: Vec<String>,
    /// The source lacks it (delta archive): it can only be there already, or be mounted.
    absent: bool,
}

/// What every worker shares.
pub(super) struct Context<'a> {
    pub registry: &'a Registry,
    pub source: &'a dyn BlobReader,
    pub opts: &'a PushOptions,
    pub reporter: Arc<dyn Reporter>,
    pub record: &'a MountRecord,
}

/// The blob tasks of `images`, largest first so the big uploads start early and the small
/// ones fill the gaps.
pub(super) fn tasks(images: &[PushImage]) -> Vec<Task> {
    let mut tasks: Vec<Task> = Vec::new();
    for image in images {
        let repo = image.target.repository().to_string();
        let blobs = image.blobs.iter().map(|b| (b, false));
        for (blob, absent) in blobs.chain(image.absent.iter().map(|b| (b, true))) {
            match tasks.iter_mut().find(|t| t.blob.digest == blob.digest) {
                Some(t) => {
                    if !t.repos.contains(&repo) {
                        t.repos.push(repo.clone());
                    }
                    t.absent &= absent;
                }
                None => tasks.push(Task {
                    blob: blob.clone(),
                    repos: vec![repo.clone()],
                    absent,
                }),
            }
        }
    }
    tasks.sort_by_key(|t| std::cmp::Reverse(t.blob.size));
    tasks
}

/// Runs every task; returns what was done and the bytes sent.
pub(super) fn push_all(ctx: &Context<'_>, tasks: &[Task]) -> Result<(Vec<Action>, u64), PushError> {
    // Blobs the source lacks must be in the registry before anything is written.
    check_absent(ctx, tasks)?;
    let total: u64 = tasks
        .iter()
        .filter(|t| !t.absent)
        .map(|t| t.blob.size)
        .sum();
    ctx.reporter.on_download_start(total, 0, tasks.len());
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let error: Mutex<Option<PushError>> = Mutex::new(None);
    let actions: Mutex<Vec<(usize, Action)>> = Mutex::new(Vec::new());
    let sent = Arc::new(AtomicU64::new(0));
    std::thread::scope(|s| {
        for _ in 0..ctx.opts.concurrency.max(1).min(tasks.len().max(1)) {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(task) = tasks.get(i) else { return };
                    match run(ctx, task, &sent) {
                        Ok(done) => actions
                            .lock()
                            .expect("actions")
                            .extend(done.into_iter().map(|a| (i, a))),
                        Err(e) => {
                            error.lock().expect("error slot").get_or_insert(e);
                            stop.store(true, Ordering::SeqCst);
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = error.into_inner().expect("error slot") {
        return Err(e);
    }
    let mut actions = actions.into_inner().expect("actions");
    // Task order (largest first), then the order of repositories within a task.
    actions.sort_by_key(|(i, _)| *i);
    Ok((
        actions.into_iter().map(|(_, a)| a).collect(),
        sent.load(Ordering::SeqCst),
    ))
}

/// Where a blob may be mounted from, besides repositories this push already put it in: what
/// the delta's inventory and earlier pushes say.
fn candidates(ctx: &Context<'_>, task: &Task) -> Vec<String> {
    let key = task.blob.digest.to_string();
    let mut out: Vec<String> = ctx.opts.mount_hints.get(&key).cloned().unwrap_or_default();
    for r in ctx.record.repos(ctx.registry.host(), &task.blob.digest) {
        if !out.contains(&r) {
            out.push(r);
        }
    }
    out.retain(|r| !task.repos.contains(r));
    out
}

/// Fails, before anything is written, when a blob the source lacks is neither in the
/// repositories that need it nor in one it could be mounted from.
fn check_absent(ctx: &Context<'_>, tasks: &[Task]) -> Result<(), PushError> {
    let mut missing = Vec::new();
    for task in tasks.iter().filter(|t| t.absent) {
        let digest = &task.blob.digest;
        let mut holder = None;
        for repo in task.repos.iter().cloned().chain(candidates(ctx, task)) {
            if ctx.registry.blob_exists(&repo, digest)? {
                holder = Some(repo);
                break;
            }
        }
        if holder.is_none() {
            missing.extend(task.repos.iter().map(|r| (digest.clone(), r.clone())));
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(PushError::Missing {
            host: ctx.registry.host().to_string(),
            missing,
        })
    }
}

/// Gets one blob into every repository of its task.
fn run(ctx: &Context<'_>, task: &Task, sent: &Arc<AtomicU64>) -> Result<Vec<Action>, PushError> {
    let blob = &task.blob;
    let what = |repo: &str| format!("blob {} for {repo}", blob.digest);
    let mut done = Vec::new();
    // A repository known to hold the blob, to mount it from.
    let mut holder: Option<String> = None;
    let mut others = candidates(ctx, task).into_iter();
    // Progress counts a blob once, whatever number of repositories it goes to.
    let mut reported = false;
    let skipped = |reported: &mut bool, from: Option<&str>| {
        if !std::mem::replace(reported, true) {
            ctx.reporter.on_blob_skipped(blob, from);
        }
    };
    for repo in &task.repos {
        let exists = ctx
            .registry
            .blob_exists(repo, &blob.digest)
            .map_err(|e| PushError::from_fetch(e, &what(repo)))?;
        if exists {
            skipped(&mut reported, None);
            done.push(Action::Exists {
                blob: blob.clone(),
                repo: repo.clone(),
            });
            holder.get_or_insert_with(|| repo.clone());
            continue;
        }
        if holder.is_none() {
            // Another repository may hold it from an earlier push; asking costs a HEAD.
            for r in others.by_ref() {
                if ctx.registry.blob_exists(&r, &blob.digest).unwrap_or(false) {
                    holder = Some(r);
                    break;
                }
            }
        }
        if ctx.opts.dry_run {
            done.push(match &holder {
                Some(from) => Action::Mount {
                    blob: blob.clone(),
                    repo: repo.clone(),
                    from: from.clone(),
                },
                None => Action::Upload {
                    blob: blob.clone(),
                    repo: repo.clone(),
                },
            });
            // What a real push would have uploaded here, it could mount in the next repository.
            holder.get_or_insert_with(|| repo.clone());
            continue;
        }
        let started = ctx
            .registry
            .start_upload(repo, &blob.digest, holder.as_deref())
            .map_err(|e| PushError::from_fetch(e, &what(repo)))?;
        match started {
            Started::Mounted => {
                let from = holder.clone().expect("mounted from the holder");
                skipped(&mut reported, Some(&from));
                done.push(Action::Mount {
                    blob: blob.clone(),
                    repo: repo.clone(),
                    from,
                });
            }
            Started::Upload(_) if task.absent => {
                // The registry would not mount it after all, and the source lacks its bytes.
                return Err(PushError::Missing {
                    host: ctx.registry.host().to_string(),
                    missing: vec![(blob.digest.clone(), repo.clone())],
                });
            }
            Started::Upload(upload) => {
                // A blob sent a second time (the registry would not mount it) is not progress.
                let reporter: Arc<dyn Reporter> = match reported {
                    false => ctx.reporter.clone(),
                    true => Arc::new(crate::reporter::Silent),
                };
                let uploader = Uploader {
                    registry: ctx.registry,
                    source: ctx.source,
                    chunk: ctx.opts.chunk_size.max(1 << 20),
                    retry: &ctx.opts.client.retry,
                    reporter,
                    sent: sent.clone(),
                };
                uploader.upload(repo, blob, upload)?;
                reported = true;
                done.push(Action::Upload {
                    blob: blob.clone(),
                    repo: repo.clone(),
                });
            }
        }
        holder = Some(repo.clone());
    }
    Ok(done)
}
