//! The `org.karapace.Manager1` interface. Each method: the caller's uid first ([`access`]), then its
//! arguments ([`input`]), then the engine on a worker thread ([`on_worker`]); the reply is the JSON
//! of [`views`], a failure a typed error ([`ManagerError`]). Mutations take a snapshot before they
//! reply, so their signals reach clients before the reply does.

use std::sync::Arc;

use karapace::engine::lifecycle::{self, Op};
use karapace::engine::{BuildRequest, Engine};
use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::{Connection, fdo, interface};

use crate::changes::{Change, Snapshots};
use crate::config::Config;
use crate::error::ManagerError;
use crate::idle::{Activity, Busy};
use crate::jobs::{JobKey, Jobs, on_worker};
use crate::views::{
    self, Built, Collected, Destroyed, Entered, EnvSummary, Renamed, Verified, json,
};
use crate::{OBJECT_PATH, access, input, progress, terminal};

/// What every call needs; shared with the worker threads.
#[derive(Debug)]
pub struct Context {
    pub config: Config,
    pub engine: Engine,
    /// The only uid allowed to call: the service's own.
    pub own_uid: u32,
    pub activity: Arc<Activity>,
    pub jobs: Arc<Jobs>,
    pub snapshots: Arc<Snapshots>,
}

/// The object served at `/org/karapace/Manager1`.
#[derive(Debug)]
pub struct Manager {
    ctx: Arc<Context>,
}

impl Manager {
    pub fn new(ctx: Arc<Context>) -> Self {
        Manager { ctx }
    }

    /// Lets the call in (or refuses it) and counts it as activity until the guard drops.
    async fn admit(&self, conn: &Connection, header: &Header<'_>) -> Result<Busy, ManagerError> {
        access::check(conn, Some(header), self.ctx.own_uid).await?;
        Ok(self.ctx.activity.begin())
    }

    /// `BuildEnvironment` and `BuildNamedEnvironment`.
    async fn build(
        &self,
        conn: &Connection,
        header: &Header<'_>,
        manifest_path: &str,
        name: Option<&str>,
    ) -> Result<String, ManagerError> {
        let busy = self.admit(conn, header).await?;
        let name = name
            .map(|n| input::identifier("the name", n).map(str::to_owned))
            .transpose()?;
        let shown = manifest_path.to_owned();
        let ctx = Arc::clone(&self.ctx);
        let conn = conn.clone();
        on_worker(move || {
            let _busy = busy;
            // Checked here, not on the bus executor: a stat can block (a network file system).
            let manifest = input::manifest_path(&shown)?;
            let key = manifest.canonicalize().unwrap_or_else(|_| manifest.clone());
            let _job = ctx.jobs.start(JobKey::Build(key))?;
            let named = name.is_some();
            let request = BuildRequest {
                manifest,
                name,
                locked: false,
                offline: false,
                require_pinned_image: false,
            };
            send_progress(&conn, &shown, "building");
            let sink = {
                let (conn, shown) = (conn.clone(), shown.clone());
                move |message: &str| send_progress(&conn, &shown, message)
            };
            match progress::with_sink(sink, || ctx.engine.build(&request)) {
                Ok(outcome) => {
                    ctx.snapshots.refresh(&ctx.engine, &conn);
                    let what = if outcome.unchanged {
                        "unchanged"
                    } else {
                        "built"
                    };
                    send_progress(&conn, &shown, &format!("{what} {}", outcome.env.short_id));
                    json(&Built::new(&outcome.env, named))
                }
                Err(e) => {
                    send_progress(&conn, &shown, &format!("failed: {e}"));
                    Err(e.into())
                }
            }
        })
        .await
    }

    /// A job that only reads or changes the store as a whole.
    async fn store_job<T: serde::Serialize>(
        &self,
        conn: &Connection,
        header: &Header<'_>,
        key: JobKey,
        work: impl FnOnce(&Engine) -> karapace::error::Result<T> + Send + 'static,
    ) -> Result<String, ManagerError> {
        let busy = self.admit(conn, header).await?;
        let ctx = Arc::clone(&self.ctx);
        let conn = conn.clone();
        on_worker(move || {
            let _busy = busy;
            let _job = ctx.jobs.start(key)?;
            let result = work(&ctx.engine)?;
            ctx.snapshots.refresh(&ctx.engine, &conn);
            json(&result)
        })
        .await
    }

    /// A property's value for an admitted caller, or the refusal as the `fdo` error a property
    /// must return.
    async fn property<T>(
        &self,
        conn: &Connection,
        header: Option<&Header<'_>>,
        value: impl FnOnce(&Context) -> T,
    ) -> fdo::Result<T> {
        match access::check(conn, header, self.ctx.own_uid).await {
            Ok(()) => {
                let _busy = self.ctx.activity.begin();
                Ok(value(&self.ctx))
            }
            Err(ManagerError::AccessDenied(m)) => Err(fdo::Error::AccessDenied(m)),
            Err(e) => Err(fdo::Error::Failed(e.to_string())),
        }
    }
}

#[interface(name = "org.karapace.Manager1")]
impl Manager {
    /// The version of this API (1).
    #[zbus(property(emits_changed_signal = "const"))]
    async fn api_version(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Option<Header<'_>>,
    ) -> fdo::Result<u32> {
        self.property(conn, header.as_ref(), |_| crate::API_VERSION)
            .await
    }

    /// The store this service manages (fixed for the life of the process).
    #[zbus(property(emits_changed_signal = "const"))]
    async fn store_root(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Option<Header<'_>>,
    ) -> fdo::Result<String> {
        self.property(conn, header.as_ref(), |ctx| {
            ctx.config.store_root.to_string_lossy().into_owned()
        })
        .await
    }

    /// `[{"env_id","short_id","name"?,"state"}]`, oldest first.
    async fn list_environments(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<String, ManagerError> {
        let busy = self.admit(conn, &header).await?;
        let engine = self.ctx.engine.clone();
        on_worker(move || {
            let _busy = busy;
            // As `karapace list`: an unreadable metadata file hides only its environment.
            let (envs, unreadable) = engine.list_readable()?;
            for bad in &unreadable {
                tracing::warn!(
                    "skipped unreadable metadata {}: {}",
                    bad.path.display(),
                    bad.reason
                );
            }
            json(&envs.iter().map(EnvSummary::from).collect::<Vec<_>>())
        })
        .await
    }

    /// One environment as `ListEnvironments` shows it.
    async fn get_environment_status(
        &self,
        id_or_name: &str,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<String, ManagerError> {
        let busy = self.admit(conn, &header).await?;
        let query = input::identifier("the environment", id_or_name)?.to_owned();
        let engine = self.ctx.engine.clone();
        on_worker(move || {
            let _busy = busy;
            let env = engine.inspect(&query)?;
            json(&EnvSummary::from(&env))
        })
        .await
    }

    /// The environment's full `env_id`, bare (not JSON).
    async fn get_environment_hash(
        &self,
        id_or_name: &str,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<String, ManagerError> {
        let busy = self.admit(conn, &header).await?;
        let query = input::identifier("the environment", id_or_name)?.to_owned();
        let engine = self.ctx.engine.clone();
        on_worker(move || {
            let _busy = busy;
            Ok(engine.inspect(&query)?.env_id.into_string())
        })
        .await
    }

    /// Builds the manifest at the absolute `manifest_path`: `{"env_id","short_id","state"}`.
    async fn build_environment(
        &self,
        manifest_path: &str,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<String, ManagerError> {
        self.build(conn, &header, manifest_path, None).await
    }

    /// Builds and names the environment: `{"env_id","short_id","state","name"}`.
    async fn build_named_environment(
        &self,
        manifest_path: &str,
        name: &str,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<String, ManagerError> {
        self.build(conn, &header, manifest_path, Some(name)).await
    }

    /// `{"destroyed":"<env_id>"}`.
    async fn destroy_environment(
        &self,
        id_or_name: &str,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<String, ManagerError> {
        let busy = self.admit(conn, &header).await?;
        let query = input::identifier("the environment", id_or_name)?.to_owned();
        let ctx = Arc::clone(&self.ctx);
        let conn = conn.clone();
        on_worker(move || {
            let _busy = busy;
            let env = ctx.engine.destroy(&query)?;
            ctx.snapshots.refresh(&ctx.engine, &conn);
            json(&Destroyed {
                destroyed: env.env_id(),
            })
        })
        .await
    }

    /// Opens `karapace enter <env_id>` in the desktop's terminal emulator: `{"entered":"<env_id>"}`.
    async fn run_environment(
        &self,
        id_or_name: &str,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<String, ManagerError> {
        let busy = self.admit(conn, &header).await?;
        let query = input::identifier("the environment", id_or_name)?.to_owned();
        let ctx = Arc::clone(&self.ctx);
        on_worker(move || {
            let _busy = busy;
            let env = ctx.engine.inspect(&query)?;
            // Said here rather than in a terminal that closes at once.
            lifecycle::check(Op::Enter, env.state, &query)?;
            terminal::open(&ctx.config, &env.env_id)?;
            json(&Entered {
                entered: &env.env_id,
            })
        })
        .await
    }

    /// `{"env_id","name"}`.
    async fn rename_environment(
        &self,
        id_or_name: &str,
        new_name: &str,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<String, ManagerError> {
        let busy = self.admit(conn, &header).await?;
        let query = input::identifier("the environment", id_or_name)?.to_owned();
        let new_name = input::identifier("the new name", new_name)?.to_owned();
        let ctx = Arc::clone(&self.ctx);
        let conn = conn.clone();
        on_worker(move || {
            let _busy = busy;
            let env = ctx.engine.rename(&query, &new_name)?;
            ctx.snapshots.refresh(&ctx.engine, &conn);
            json(&Renamed {
                env_id: &env.env_id,
                name: env.name.as_deref(),
            })
        })
        .await
    }

    /// The `karapace new` templates: `[{"name","description"}]`.
    async fn list_presets(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<String, ManagerError> {
        let _busy = self.admit(conn, &header).await?;
        json(&views::presets())
    }

    /// `{"dry_run","removed_envs","removed_layers","removed_objects"}` (a dry run counts what a
    /// real one would remove).
    async fn garbage_collect(
        &self,
        dry_run: bool,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<String, ManagerError> {
        self.store_job(conn, &header, JobKey::GarbageCollect, move |engine| {
            Ok(Collected::from(&engine.gc(dry_run)?))
        })
        .await
    }

    /// `{"checked","passed","failed"}`; failures are counted, not an error.
    async fn verify_store(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<String, ManagerError> {
        self.store_job(conn, &header, JobKey::Verify, |engine| {
            Ok(engine
                .verify()?
                .as_ref()
                .map(Verified::from)
                .unwrap_or_default())
        })
        .await
    }

    /// An environment appeared (built by this service or by another program).
    #[zbus(signal)]
    async fn environment_created(emitter: &SignalEmitter<'_>, env_id: &str) -> zbus::Result<()>;

    /// An environment was destroyed (or removed by gc).
    #[zbus(signal)]
    async fn environment_removed(emitter: &SignalEmitter<'_>, env_id: &str) -> zbus::Result<()>;

    /// An environment's state changed (`built`, `running`, `frozen`, `archived`, `defined`).
    #[zbus(signal)]
    async fn environment_state_changed(
        emitter: &SignalEmitter<'_>,
        env_id: &str,
        state: &str,
    ) -> zbus::Result<()>;

    /// A step of a build this service runs: `building`, the engine's steps, then `built
    /// <short_id>`, `unchanged <short_id>` or `failed: <reason>`.
    #[zbus(signal)]
    async fn build_progress(
        emitter: &SignalEmitter<'_>,
        manifest_path: &str,
        message: &str,
    ) -> zbus::Result<()>;
}

/// Sends the signal for one change.
pub async fn signal(conn: &Connection, change: &Change) -> zbus::Result<()> {
    let emitter = SignalEmitter::new(conn, OBJECT_PATH)?;
    match change {
        Change::Created(id) => Manager::environment_created(&emitter, id).await,
        Change::Removed(id) => Manager::environment_removed(&emitter, id).await,
        Change::StateChanged(id, state) => {
            Manager::environment_state_changed(&emitter, id, &state.to_string()).await
        }
    }
}

/// Sends `BuildProgress` from a worker thread; a failure to send only loses the message.
fn send_progress(conn: &Connection, manifest_path: &str, message: &str) {
    let message = progress::clean(message);
    let sent = futures_lite::future::block_on(async {
        let emitter = SignalEmitter::new(conn, OBJECT_PATH)?;
        Manager::build_progress(&emitter, manifest_path, &message).await
    });
    if let Err(e) = sent {
        tracing::warn!("cannot send BuildProgress: {e}");
    }
}
