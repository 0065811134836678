//! The trussed service opcard runs on: trussed's software platform with
//! the backends and extensions opcard's `Client` trait asks for
//! (trussed-auth for the PINs, trussed-staging for wrap-key-to-file and
//! chunked writes, trussed-rsa-alloc for RSA in software).

use trussed::backend::{Backend as _, BackendId};
use trussed::platform::Platform;
use trussed::serde_extensions::{ExtensionDispatch, ExtensionId, ExtensionImpl};
use trussed::service::ServiceResources;
use trussed::types::Context;
use trussed::virt::{self, StoreConfig};
use trussed_auth::AuthExtension;
use trussed_auth_backend::{AuthBackend, AuthContext, FilesystemLayout};
use trussed_chunked::ChunkedExtension;
use trussed_core::Error;
use trussed_core::api::{Reply, Request, reply, request};
use trussed_core::types::{Bytes, Location};
use trussed_rsa_alloc::SoftwareRsa;
use trussed_staging::{StagingBackend, StagingContext};
use trussed_wrap_key_to_file::WrapKeyToFileExtension;

/// The client opcard is given.
pub type Client<'a> = virt::Client<'a, Backends>;

/// Where trussed looks for a request, in order: the custom backends first,
/// then trussed's own core.
const ORDER: &[BackendId<Custom>] = &[
    BackendId::Custom(Custom::Staging),
    BackendId::Custom(Custom::Auth),
    BackendId::Custom(Custom::Rsa),
    BackendId::Core,
];

/// Key material trussed-auth mixes into its PIN-derived keys. A real device
/// uses a device secret; here a constant, so that a card kept in `--state`
/// opens again on the next start.
const HARDWARE_KEY: &[u8] = b"certagent-opcard-emulator";

#[derive(Debug, Clone, Copy)]
pub enum Custom {
    Auth,
    Staging,
    Rsa,
}

#[derive(Debug, Clone, Copy)]
pub enum Extension {
    Auth,
    WrapKeyToFile,
    Chunked,
}

impl From<Extension> for u8 {
    fn from(extension: Extension) -> u8 {
        extension as u8
    }
}

impl TryFrom<u8> for Extension {
    type Error = Error;

    fn try_from(id: u8) -> Result<Self, Error> {
        [
            Extension::Auth,
            Extension::WrapKeyToFile,
            Extension::Chunked,
        ]
        .into_iter()
        .find(|e| *e as u8 == id)
        .ok_or(Error::InternalError)
    }
}

impl ExtensionId<AuthExtension> for Backends {
    type Id = Extension;
    const ID: Extension = Extension::Auth;
}

impl ExtensionId<WrapKeyToFileExtension> for Backends {
    type Id = Extension;
    const ID: Extension = Extension::WrapKeyToFile;
}

impl ExtensionId<ChunkedExtension> for Backends {
    type Id = Extension;
    const ID: Extension = Extension::Chunked;
}

pub struct Backends {
    auth: AuthBackend,
    staging: StagingBackend,
}

#[derive(Default)]
pub struct BackendContexts {
    auth: AuthContext,
    staging: StagingContext,
}

impl Backends {
    fn new() -> Self {
        Self {
            auth: AuthBackend::with_hw_key(
                Location::Internal,
                Bytes::try_from(HARDWARE_KEY).expect("hardware key length"),
                FilesystemLayout::V0,
            ),
            staging: StagingBackend::new(),
        }
    }
}

impl ExtensionDispatch for Backends {
    type BackendId = Custom;
    type Context = BackendContexts;
    type ExtensionId = Extension;

    fn core_request<P: Platform>(
        &mut self,
        backend: &Custom,
        ctx: &mut Context<BackendContexts>,
        request: &Request,
        resources: &mut ServiceResources<P>,
    ) -> Result<Reply, Error> {
        let core = &mut ctx.core;
        let own = &mut ctx.backends;
        match backend {
            Custom::Auth => self.auth.request(core, &mut own.auth, request, resources),
            Custom::Staging => self
                .staging
                .request(core, &mut own.staging, request, resources),
            Custom::Rsa => SoftwareRsa.request(core, &mut (), request, resources),
        }
    }

    fn extension_request<P: Platform>(
        &mut self,
        backend: &Custom,
        extension: &Extension,
        ctx: &mut Context<BackendContexts>,
        request: &request::SerdeExtension,
        resources: &mut ServiceResources<P>,
    ) -> Result<reply::SerdeExtension, Error> {
        let core = &mut ctx.core;
        let own = &mut ctx.backends;
        match (backend, extension) {
            (Custom::Auth, Extension::Auth) => {
                ExtensionImpl::<AuthExtension>::extension_request_serialized(
                    &mut self.auth,
                    core,
                    &mut own.auth,
                    request,
                    resources,
                )
            }
            (Custom::Staging, Extension::WrapKeyToFile) => {
                ExtensionImpl::<WrapKeyToFileExtension>::extension_request_serialized(
                    &mut self.staging,
                    core,
                    &mut own.staging,
                    request,
                    resources,
                )
            }
            (Custom::Staging, Extension::Chunked) => {
                ExtensionImpl::<ChunkedExtension>::extension_request_serialized(
                    &mut self.staging,
                    core,
                    &mut own.staging,
                    request,
                    resources,
                )
            }
            _ => Err(Error::RequestNotAvailable),
        }
    }
}

/// Run `f` with an opcard client on a software trussed platform whose
/// storage is `store`.
pub fn with_client<R>(store: StoreConfig<'_>, f: impl FnOnce(Client<'_>) -> R) -> R {
    virt::with_platform(store, |platform| {
        platform.run_client_with_backends("opcard", Backends::new(), ORDER, f)
    })
}
