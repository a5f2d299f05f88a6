//! The admin lists as server streams (DESIGN 3.7: lists never fail because of their size):
//! entries, tasks and agents in chunks of about [`CHUNK_BYTES`] from the in-memory index, the
//! audit log in pages read from the store, and `audit verify` walking the chain page by page
//! in bounded memory.

use std::sync::Arc;

use mandate_proto::admin::{self as pb, VerifyAuditResponse};
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::registry::Registry;
use crate::store::{AuditRecord, ChainVerifier, Store};

/// Bytes of encoded items after which a list message is sent: well under the 4 MiB every
/// gRPC client accepts by default.
pub(super) const CHUNK_BYTES: usize = 1024 * 1024;
/// Audit records read from the store at a time.
const AUDIT_PAGE: usize = 2048;
/// Messages buffered ahead of a slow reader; with [`CHUNK_BYTES`] this bounds the memory a
/// list holds while it streams.
const DEPTH: usize = 4;

/// A stream of list messages.
pub(super) type ListStream<M> = ReceiverStream<Result<M, Status>>;

/// Streams `items`, rendered one by one, in messages of about [`CHUNK_BYTES`].
pub(super) fn chunked<T, R, M>(
    items: Vec<T>,
    render: impl Fn(&T) -> R + Send + 'static,
    wrap: impl Fn(Vec<R>) -> M + Send + 'static,
) -> ListStream<M>
where
    T: Send + 'static,
    R: Message + Send + 'static,
    M: Send + 'static,
{
    let (tx, rx) = mpsc::channel(DEPTH);
    tokio::spawn(async move {
        let mut chunk = Vec::new();
        let mut bytes = 0;
        for item in items {
            let rendered = render(&item);
            bytes += rendered.encoded_len() + 8;
            chunk.push(rendered);
            if bytes >= CHUNK_BYTES {
                bytes = 0;
                if tx.send(Ok(wrap(std::mem::take(&mut chunk)))).await.is_err() {
                    return;
                }
            }
        }
        if !chunk.is_empty() {
            let _ = tx.send(Ok(wrap(chunk))).await;
        }
    });
    ReceiverStream::new(rx)
}

/// Which audit records `audit list` wants.
#[derive(Debug, Clone, Default)]
pub(super) struct AuditQuery {
    /// Only this task's records; empty: all.
    pub(super) task_id: String,
    /// Only records after this seq.
    pub(super) since_seq: u64,
    /// At most this many; 0: all.
    pub(super) limit: u64,
}

/// Streams the audit records `query` selects, reading the store a page at a time.
pub(super) fn audit(
    store: Arc<dyn Store>,
    query: AuditQuery,
    render: fn(AuditRecord) -> pb::AuditRecord,
) -> ListStream<pb::ListAuditResponse> {
    let (tx, rx) = mpsc::channel(DEPTH);
    tokio::task::spawn_blocking(move || {
        let limit = if query.limit == 0 {
            u64::MAX
        } else {
            query.limit
        };
        let mut after = query.since_seq;
        let mut sent = 0u64;
        let mut chunk = Vec::new();
        let mut bytes = 0;
        while sent < limit {
            let page = match store.audit_chunk(after, AUDIT_PAGE) {
                Ok(page) => page,
                Err(e) => {
                    let _ = tx.blocking_send(Err(Status::internal(e.to_string())));
                    return;
                }
            };
            let Some(last) = page.last() else { break };
            after = last.seq;
            for record in page {
                if !query.task_id.is_empty()
                    && record.task_id.as_deref() != Some(query.task_id.as_str())
                {
                    continue;
                }
                let rendered = render(record);
                bytes += rendered.encoded_len() + 8;
                chunk.push(rendered);
                sent += 1;
                if bytes >= CHUNK_BYTES || sent == limit {
                    bytes = 0;
                    let records = std::mem::take(&mut chunk);
                    if tx
                        .blocking_send(Ok(pb::ListAuditResponse { records }))
                        .is_err()
                    {
                        return;
                    }
                }
                if sent == limit {
                    break;
                }
            }
        }
        if !chunk.is_empty() {
            let _ = tx.blocking_send(Ok(pb::ListAuditResponse { records: chunk }));
        }
    });
    ReceiverStream::new(rx)
}

/// Walks the whole chain a page at a time up to the head the registry holds now, checking
/// every link and that the last record is that head by number and hash (DESIGN 4).
pub(super) async fn verify(registry: &Registry) -> VerifyAuditResponse {
    let head = registry.read().audit_head();
    let store = Arc::clone(registry.store());
    let walk = tokio::task::spawn_blocking(move || {
        let mut verifier = ChainVerifier::default();
        while verifier.records() < head.0 {
            let page = store
                .audit_chunk(verifier.records(), AUDIT_PAGE)
                .map_err(|e| e.to_string())?;
            if page.is_empty() {
                break;
            }
            // Records appended after the walk began are not part of this check.
            let before = verifier.records();
            for record in page.iter().take_while(|r| r.seq <= head.0) {
                verifier.push(record).map_err(|p| p.to_string())?;
            }
            if verifier.records() == before {
                break;
            }
        }
        verifier.finish(&head).map_err(|p| p.to_string())
    });
    let result = walk
        .await
        .unwrap_or_else(|e| Err(format!("audit verification stopped: {e}")));
    match result {
        Ok(records) => VerifyAuditResponse {
            ok: true,
            records,
            problem: String::new(),
        },
        Err(problem) => VerifyAuditResponse {
            ok: false,
            records: 0,
            problem,
        },
    }
}
