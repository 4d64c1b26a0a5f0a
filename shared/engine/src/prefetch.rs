//! Reading pages ahead: KiotViet answers in ~100 ms, so a pull that waits for each page before
//! asking for the next spends most of its time waiting. Once the first page tells the total, the
//! next pages are requested ahead and handed out in order. Twice as many pages as the shop has
//! GET slots are requested ahead: the slots cap what is in flight, and the pages queued behind them
//! start the moment a slot frees, instead of when the consumer next asks (which it does only after
//! a page's writes are done).
//!
//! Offset paging can shift under us (a record deleted or modified while we read). The consumer
//! says which offset it expects next; a page fetched for another offset is thrown away and reading
//! restarts there, so a shift costs a few GETs, never a record.

use std::collections::VecDeque;
use std::sync::Arc;

use kiotviet::{KiotVietClient, KvError, ListRequest, Page};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

/// Pages of one list, read ahead.
pub struct Prefetcher {
    kv: KiotVietClient,
    req: Arc<ListRequest>,
    page_size: i64,
    /// Pages requested ahead (done or not) before the consumer takes them.
    ahead: usize,
    /// Shared by every pull of the shop in this process: at most this many GETs in flight.
    slots: Arc<Semaphore>,
    total: Option<i64>,
    /// Offsets requested and not yet handed out, in order.
    inflight: VecDeque<(i64, JoinHandle<Result<Page, KvError>>)>,
    /// The next offset to request.
    next_request: i64,
}

impl Prefetcher {
    /// `depth`: the GETs in flight this list may use (the shop's slots may allow fewer).
    pub fn new(kv: KiotVietClient, req: ListRequest, depth: usize, slots: Arc<Semaphore>) -> Self {
        let page_size = i64::from(kv.config().page_size.max(1));
        Prefetcher {
            kv,
            req: Arc::new(req),
            page_size,
            ahead: depth.max(1) * 2,
            slots,
            total: None,
            inflight: VecDeque::new(),
            next_request: 0,
        }
    }

    /// The page at offset `position`. Requests ahead once the total is known.
    pub async fn page_at(&mut self, position: i64) -> Result<Page, KvError> {
        if self.inflight.front().map(|(p, _)| *p) != Some(position) {
            self.restart(position);
        }
        self.fill();
        let Some((_, handle)) = self.inflight.pop_front() else {
            return Err(KvError::Transient {
                status: None,
                message: "no page was requested".into(),
            });
        };
        let page = match handle.await {
            Ok(r) => r,
            Err(e) => Err(KvError::Transient {
                status: None,
                message: format!("page request task failed: {e}"),
            }),
        };
        match &page {
            Ok(p) => {
                let moved = self.total.is_some_and(|t| Some(t) != p.total);
                self.total = p.total;
                // A page shorter than asked, before the end, means the list shifted: what was
                // requested beyond it may start at the wrong offset.
                let short = (p.data.len() as i64) < self.page_size
                    && p.total
                        .is_some_and(|t| position + (p.data.len() as i64) < t);
                if moved || short {
                    self.restart(position + p.data.len() as i64);
                }
            }
            Err(_) => self.restart(position),
        }
        page
    }

    /// Drops what was requested ahead and starts again at `position`.
    fn restart(&mut self, position: i64) {
        for (_, h) in self.inflight.drain(..) {
            h.abort();
        }
        self.next_request = position;
    }

    /// Requests pages until `ahead` are requested; only the first page while the total is unknown.
    fn fill(&mut self) {
        let limit = if self.total.is_some() { self.ahead } else { 1 };
        while self.inflight.len() < limit {
            let pos = self.next_request;
            if !self.inflight.is_empty() && self.total.is_some_and(|t| pos >= t) {
                break;
            }
            let kv = self.kv.clone();
            let req = self.req.clone();
            let slots = self.slots.clone();
            let handle = tokio::spawn(async move {
                let _slot = slots
                    .acquire_owned()
                    .await
                    .map_err(|_| KvError::Transient {
                        status: None,
                        message: "shutting down".into(),
                    })?;
                kv.page(&req, pos).await
            });
            self.inflight.push_back((pos, handle));
            self.next_request = pos + self.page_size;
        }
    }
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        for (_, h) in self.inflight.drain(..) {
            h.abort();
        }
    }
}
