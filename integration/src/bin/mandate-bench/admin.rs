//! The server's admin API over its unix socket: tokens, bundles, entries and tasks, one call
//! at a time or many at once (much faster than one CLI process per entry).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use mandate_integration::workload::channel;
use mandate_proto::admin::admin_client::AdminClient;
use mandate_proto::admin::{
    CloseTaskRequest, CreateEntryRequest, CreateJoinTokenRequest, DeleteEntryRequest,
    HealthRequest, HealthResponse, OpenTaskRequest, ShowBundleRequest,
};
use mandate_proto::types::{Bundle, Entry};
use tonic::transport::Channel;

/// The largest gRPC message the bench accepts (the full snapshots can be big).
pub(crate) const MAX_MESSAGE: usize = 256 * 1024 * 1024;

/// A cloneable admin client.
#[derive(Debug, Clone)]
pub(crate) struct Admin {
    client: AdminClient<Channel>,
}

impl Admin {
    /// Connects to the admin socket.
    ///
    /// Fails when the socket does not accept the connection.
    pub(crate) async fn connect(socket: &Path) -> Result<Self> {
        let client = AdminClient::new(channel(socket).await?)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);
        Ok(Self { client })
    }

    /// A new join token for `agent_id`.
    ///
    /// Fails when the server refuses.
    pub(crate) async fn token(&self, agent_id: &str) -> Result<String> {
        let request = CreateJoinTokenRequest {
            agent_id: agent_id.to_owned(),
            ttl_seconds: 0,
        };
        Ok(self
            .client
            .clone()
            .create_join_token(request)
            .await
            .context("CreateJoinToken")?
            .into_inner()
            .token)
    }

    /// The server's health: trust domain, entry count, revision.
    ///
    /// Fails when the server does not answer.
    pub(crate) async fn health(&self) -> Result<HealthResponse> {
        Ok(self
            .client
            .clone()
            .health(HealthRequest {})
            .await
            .context("Health")?
            .into_inner())
    }

    /// The trust bundle.
    ///
    /// Fails when the server refuses.
    pub(crate) async fn bundle(&self) -> Result<Bundle> {
        Ok(self
            .client
            .clone()
            .show_bundle(ShowBundleRequest {})
            .await
            .context("ShowBundle")?
            .into_inner())
    }

    /// Creates an entry for `spiffe_id` under `parent_id` with `selectors`, optionally bound
    /// to `task_id`.
    ///
    /// Fails when the server refuses.
    pub(crate) async fn create_entry(
        &self,
        spiffe_id: &str,
        parent_id: &str,
        selectors: &[String],
        task_id: Option<&str>,
    ) -> Result<Entry> {
        let request = CreateEntryRequest {
            spiffe_id: spiffe_id.to_owned(),
            parent_id: parent_id.to_owned(),
            selectors: selectors.to_vec(),
            task_id: task_id.unwrap_or_default().to_owned(),
            ..CreateEntryRequest::default()
        };
        let entry = self.client.clone().create_entry(request).await;
        Ok(entry
            .with_context(|| format!("CreateEntry {spiffe_id}"))?
            .into_inner())
    }

    /// Deletes an entry.
    ///
    /// Fails when the server refuses.
    pub(crate) async fn delete_entry(&self, id: &str) -> Result<()> {
        self.client
            .clone()
            .delete_entry(DeleteEntryRequest { id: id.to_owned() })
            .await
            .context("DeleteEntry")?;
        Ok(())
    }

    /// Opens a task for `user:bench@example.org` allowing `po.read`, due in an hour; returns its ID.
    ///
    /// Fails when the server refuses.
    pub(crate) async fn open_task(&self) -> Result<String> {
        let deadline = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() + 3600;
        let request = OpenTaskRequest {
            principal: "user:bench@example.org".into(),
            purpose: "benchmark".into(),
            actions: vec!["po.read".into()],
            deadline_unix: i64::try_from(deadline)?,
            ..OpenTaskRequest::default()
        };
        Ok(self
            .client
            .clone()
            .open_task(request)
            .await
            .context("OpenTask")?
            .into_inner()
            .id)
    }

    /// Closes a task.
    ///
    /// Fails when the server refuses.
    pub(crate) async fn close_task(&self, id: &str) -> Result<()> {
        let request = CloseTaskRequest {
            id: id.to_owned(),
            reason: "benchmark".into(),
        };
        self.client
            .clone()
            .close_task(request)
            .await
            .context("CloseTask")?;
        Ok(())
    }
}

/// What a bulk creation achieved.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bulk {
    /// How many items were created.
    pub(crate) created: usize,
    /// How long it took.
    pub(crate) elapsed: Duration,
    /// Whether the time budget ran out before all were created.
    pub(crate) truncated: bool,
}

/// Runs `make(i)` for `i` in `0..count` on `concurrency` tasks, stopping early when `budget`
/// runs out; returns how many succeeded.
///
/// Fails on the first error of any call.
pub(crate) async fn bulk<F, Fut>(
    count: usize,
    concurrency: usize,
    budget: Duration,
    make: F,
) -> Result<Bulk>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send,
{
    let start = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let make = Arc::new(make);
    let mut workers = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (next, done, make) = (next.clone(), done.clone(), make.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count || start.elapsed() > budget {
                    return Ok::<(), anyhow::Error>(());
                }
                make(i).await?;
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for worker in workers {
        worker.await??;
    }
    let created = done.load(Ordering::Relaxed);
    Ok(Bulk {
        created,
        elapsed: start.elapsed(),
        truncated: created < count,
    })
}
