//! Certificates: a development CA, PEM loading into rustls configurations,
//! and the rule that binds a certificate to a node id.
//!
//! A node's certificate names it with the DNS subject alternative name
//! `node-<id>` ([`node_server_name`]) and is issued by the cluster CA. That
//! is the whole binding rule, checked by [`check_node_id`]; both network
//! transports use it (raft-transport-tcp receives it as a callback), so the
//! rule lives in exactly one place.
//!
//! [`DevCa`] and [`write_dev_pki`] create throwaway PKI for tests and local
//! clusters. They must never be the only protection of a production
//! cluster's CA key: an operator with their own PKI issues certificates with
//! the same SAN rule and loads them with [`NodeTls::load`].

use raft_core::NodeId;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::RootCertStore;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The common name of a development CA.
const DEV_CA_NAME: &str = "raft-toolkit development CA";

/// Why certificates could not be created or loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// PEM input held nothing usable.
    #[error("{what}: {reason}")]
    Pem {
        /// What was being read (a path or "certificate PEM").
        what: String,
        /// What was wrong.
        reason: String,
    },
    /// Generating a key or certificate failed.
    #[error("certificate generation failed: {0}")]
    Generate(String),
    /// rustls refused the material.
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// The node's own certificate is not bound to its id.
    #[error("certificate is not valid for node {id}: {reason}")]
    WrongNode {
        /// The node id the certificate should name.
        id: NodeId,
        /// Why it does not.
        reason: String,
    },
}

impl From<rcgen::Error> for CertError {
    fn from(e: rcgen::Error) -> Self {
        CertError::Generate(e.to_string())
    }
}

/// The TLS server name (and DNS SAN) that identifies node `id`: `node-<id>`.
pub fn node_server_name(id: NodeId) -> String {
    format!("node-{}", id.0)
}

/// Checks that `cert` (an end-entity certificate whose chain the TLS layer
/// has already verified) is bound to node `id`, i.e. carries the DNS SAN
/// `node-<id>`. Returns a reason fit for a log line when it is not.
pub fn check_node_id(cert: &CertificateDer<'_>, id: NodeId) -> Result<(), String> {
    let parsed =
        ParsedCertificate::try_from(cert).map_err(|e| format!("unparsable certificate: {e}"))?;
    let name = node_server_name(id);
    let server_name = ServerName::try_from(name.as_str())
        .map_err(|e| format!("invalid server name {name}: {e}"))?;
    rustls::client::verify_server_name(&parsed, &server_name)
        .map_err(|e| format!("certificate is not bound to node id {id} (expected SAN {name}): {e}"))
}

/// A node's PEM certificate (chain) and private key.
#[derive(Clone)]
pub struct NodePem {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PEM (PKCS#8).
    pub key_pem: String,
}

impl std::fmt::Debug for NodePem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodePem")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

/// A development certificate authority that issues node certificates.
pub struct DevCa {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl std::fmt::Debug for DevCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCa").finish_non_exhaustive()
    }
}

impl DevCa {
    fn params() -> Result<CertificateParams, CertError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, DEV_CA_NAME);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        Ok(params)
    }

    /// A new CA with a fresh key.
    pub fn generate() -> Result<DevCa, CertError> {
        let key = KeyPair::generate()?;
        let cert = Self::params()?.self_signed(&key)?;
        Ok(DevCa { cert, key })
    }

    /// Rebuilds a CA from its private key (as written by [`DevCa::key_pem`]),
    /// so that more nodes can be issued later. Certificates it issues verify
    /// against the originally written `ca.pem`: same name, same key.
    pub fn from_key_pem(key_pem: &str) -> Result<DevCa, CertError> {
        let key = KeyPair::from_pem(key_pem)?;
        let cert = Self::params()?.self_signed(&key)?;
        Ok(DevCa { cert, key })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    /// The CA private key, PEM. Keep it secret.
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// Issues a certificate for node `id` (DNS SAN `node-<id>`, usable for
    /// both TLS client and server authentication) with a fresh key.
    pub fn issue(&self, id: NodeId) -> Result<NodePem, CertError> {
        let name = node_server_name(id);
        let mut params = CertificateParams::new(vec![name.clone()])?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        Ok(NodePem {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Issues node `id` a certificate and builds its TLS configurations.
    pub fn node_tls(&self, id: NodeId) -> Result<NodeTls, CertError> {
        let pem = self.issue(id)?;
        NodeTls::from_pem(
            id,
            self.cert_pem().as_bytes(),
            pem.cert_pem.as_bytes(),
            pem.key_pem.as_bytes(),
        )
    }
}

fn write_file(path: &Path, contents: &str, secret: bool) -> Result<(), CertError> {
    let io_err = |source| CertError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut f = opts.open(path).map_err(io_err)?;
    io::Write::write_all(&mut f, contents.as_bytes()).map_err(io_err)
}

fn read_file(path: &Path) -> Result<Vec<u8>, CertError> {
    fs::read(path).map_err(|source| CertError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes development PKI for `ids` into `dir` (created if missing):
/// `ca.pem`, `ca.key` (mode 0600), and `node-<id>.pem` / `node-<id>.key`
/// for each id. An existing `ca.pem`/`ca.key` pair is reused, so nodes can
/// be added to a cluster later; node files are overwritten.
pub fn write_dev_pki(dir: &Path, ids: &[NodeId]) -> Result<DevCa, CertError> {
    fs::create_dir_all(dir).map_err(|source| CertError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let ca_pem = dir.join("ca.pem");
    let ca_key = dir.join("ca.key");
    let ca = if ca_pem.exists() && ca_key.exists() {
        let key = String::from_utf8(read_file(&ca_key)?).map_err(|_| CertError::Pem {
            what: ca_key.display().to_string(),
            reason: "not UTF-8 PEM".into(),
        })?;
        DevCa::from_key_pem(&key)?
    } else {
        let ca = DevCa::generate()?;
        write_file(&ca_key, &ca.key_pem(), true)?;
        write_file(&ca_pem, &ca.cert_pem(), false)?;
        ca
    };
    for &id in ids {
        let pem = ca.issue(id)?;
        let base = node_server_name(id);
        write_file(&dir.join(format!("{base}.key")), &pem.key_pem, true)?;
        write_file(&dir.join(format!("{base}.pem")), &pem.cert_pem, false)?;
    }
    Ok(ca)
}

/// Where a node's PEM files are in a directory written by [`write_dev_pki`]:
/// (`ca.pem`, `node-<id>.pem`, `node-<id>.key`).
pub fn dev_pki_paths(dir: &Path, id: NodeId) -> (PathBuf, PathBuf, PathBuf) {
    let base = node_server_name(id);
    (
        dir.join("ca.pem"),
        dir.join(format!("{base}.pem")),
        dir.join(format!("{base}.key")),
    )
}

fn parse_certs(what: &str, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let mut rd = pem;
    let certs: Vec<_> = rustls_pemfile::certs(&mut rd)
        .collect::<Result<_, _>>()
        .map_err(|e| CertError::Pem {
            what: what.to_string(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(CertError::Pem {
            what: what.to_string(),
            reason: "no CERTIFICATE block found".into(),
        });
    }
    Ok(certs)
}

fn parse_key(what: &str, pem: &[u8]) -> Result<PrivateKeyDer<'static>, CertError> {
    let mut rd = pem;
    rustls_pemfile::private_key(&mut rd)
        .map_err(|e| CertError::Pem {
            what: what.to_string(),
            reason: e.to_string(),
        })?
        .ok_or_else(|| CertError::Pem {
            what: what.to_string(),
            reason: "no PRIVATE KEY block found".into(),
        })
}

/// A node's rustls configurations: TLS 1.3 only, ring, mutual
/// authentication against the cluster CA. Usable by both the QUIC and the
/// TCP transport (with [`node_server_name`] and [`check_node_id`]).
#[derive(Clone)]
pub struct NodeTls {
    /// For accepted connections: presents this node's certificate and
    /// requires a client certificate issued by the cluster CA.
    pub server: Arc<rustls::ServerConfig>,
    /// For dialed connections: presents this node's certificate and trusts
    /// only the cluster CA.
    pub client: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for NodeTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeTls").finish_non_exhaustive()
    }
}

impl NodeTls {
    /// Builds the configurations for node `id` from PEM bytes: the CA
    /// certificate(s) to trust, this node's certificate chain (end entity
    /// first) and its private key. Fails if the certificate is not bound to
    /// `id`, so a misplaced file is caught at startup rather than by peers.
    pub fn from_pem(
        id: NodeId,
        ca_pem: &[u8],
        cert_pem: &[u8],
        key_pem: &[u8],
    ) -> Result<NodeTls, CertError> {
        Self::build(
            id,
            parse_certs("CA certificate PEM", ca_pem)?,
            parse_certs("node certificate PEM", cert_pem)?,
            parse_key("node key PEM", key_pem)?,
        )
    }

    /// Like [`NodeTls::from_pem`], reading the three files; errors name the
    /// file at fault.
    pub fn load(id: NodeId, ca: &Path, cert: &Path, key: &Path) -> Result<NodeTls, CertError> {
        let name = |p: &Path| p.display().to_string();
        Self::build(
            id,
            parse_certs(&name(ca), &read_file(ca)?)?,
            parse_certs(&name(cert), &read_file(cert)?)?,
            parse_key(&name(key), &read_file(key)?)?,
        )
    }

    fn build(
        id: NodeId,
        ca: Vec<CertificateDer<'static>>,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<NodeTls, CertError> {
        check_node_id(&chain[0], id).map_err(|reason| CertError::WrongNode { id, reason })?;
        let mut roots = RootCertStore::empty();
        for c in ca {
            roots
                .add(c)
                .map_err(|e| CertError::Tls(format!("CA certificate rejected: {e}")))?;
        }
        let roots = Arc::new(roots);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = |e: rustls::Error| CertError::Tls(e.to_string());
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| CertError::Tls(e.to_string()))?;
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(tls)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(tls)?;
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(tls)?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(tls)?;
        Ok(NodeTls {
            server: Arc::new(server),
            client: Arc::new(client),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_certificates_are_bound_to_their_node() {
        let ca = DevCa::generate().unwrap();
        let pem = ca.issue(NodeId(7)).unwrap();
        let der = parse_certs("t", pem.cert_pem.as_bytes()).unwrap();
        assert_eq!(check_node_id(&der[0], NodeId(7)), Ok(()));
        let err = check_node_id(&der[0], NodeId(8)).unwrap_err();
        assert!(err.contains("node-8"), "{err}");
        assert!(check_node_id(&CertificateDer::from(vec![1, 2, 3]), NodeId(7)).is_err());
    }

    #[test]
    fn loading_refuses_another_nodes_certificate() {
        let ca = DevCa::generate().unwrap();
        let pem = ca.issue(NodeId(1)).unwrap();
        let ca_pem = ca.cert_pem();
        assert!(NodeTls::from_pem(
            NodeId(1),
            ca_pem.as_bytes(),
            pem.cert_pem.as_bytes(),
            pem.key_pem.as_bytes()
        )
        .is_ok());
        let err = NodeTls::from_pem(
            NodeId(2),
            ca_pem.as_bytes(),
            pem.cert_pem.as_bytes(),
            pem.key_pem.as_bytes(),
        )
        .unwrap_err();
        assert!(matches!(err, CertError::WrongNode { .. }), "{err}");
        let err = NodeTls::from_pem(
            NodeId(1),
            b"junk",
            pem.cert_pem.as_bytes(),
            pem.key_pem.as_bytes(),
        )
        .unwrap_err();
        assert!(matches!(err, CertError::Pem { .. }), "{err}");
    }

    /// Runs a TLS handshake in memory; Ok when both sides accept.
    fn handshake(
        client: &NodeTls,
        server: &NodeTls,
        server_id: NodeId,
    ) -> Result<(), rustls::Error> {
        let name = ServerName::try_from(node_server_name(server_id)).unwrap();
        let mut c = rustls::ClientConnection::new(client.client.clone(), name)?;
        let mut s = rustls::ServerConnection::new(server.server.clone())?;
        for _ in 0..10 {
            let mut buf = Vec::new();
            c.write_tls(&mut buf).unwrap();
            s.read_tls(&mut &buf[..]).unwrap();
            s.process_new_packets()?;
            buf.clear();
            s.write_tls(&mut buf).unwrap();
            c.read_tls(&mut &buf[..]).unwrap();
            c.process_new_packets()?;
            if !c.is_handshaking() && !s.is_handshaking() {
                return Ok(());
            }
        }
        panic!("handshake did not finish");
    }

    #[test]
    fn mutual_authentication_accepts_the_cluster_and_refuses_strangers() {
        let ca = DevCa::generate().unwrap();
        let a = ca.node_tls(NodeId(1)).unwrap();
        let b = ca.node_tls(NodeId(2)).unwrap();
        handshake(&a, &b, NodeId(2)).unwrap();
        // The server's certificate must carry the dialed name.
        assert!(handshake(&a, &b, NodeId(3)).is_err());
        // A client whose certificate another CA issued is refused by the
        // server even though the client trusts the server.
        let rogue = DevCa::generate().unwrap().issue(NodeId(1)).unwrap();
        let stranger = NodeTls::from_pem(
            NodeId(1),
            ca.cert_pem().as_bytes(),
            rogue.cert_pem.as_bytes(),
            rogue.key_pem.as_bytes(),
        )
        .unwrap();
        let err = handshake(&stranger, &b, NodeId(2)).unwrap_err();
        assert!(err.to_string().contains("certificate"), "{err}");
    }

    #[test]
    fn dev_pki_round_trips_through_files_and_a_reloaded_ca() {
        let dir = std::env::temp_dir().join(format!("raft-certs-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        write_dev_pki(&dir, &[NodeId(1)]).unwrap();
        // A second call reuses the CA on disk to issue another node.
        write_dev_pki(&dir, &[NodeId(2)]).unwrap();
        let loaded: Vec<NodeTls> = [NodeId(1), NodeId(2)]
            .into_iter()
            .map(|id| {
                let (ca, cert, key) = dev_pki_paths(&dir, id);
                NodeTls::load(id, &ca, &cert, &key).unwrap()
            })
            .collect();
        handshake(&loaded[0], &loaded[1], NodeId(2)).unwrap();
        handshake(&loaded[1], &loaded[0], NodeId(1)).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.join("node-1.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(
                mode & 0o077,
                0,
                "private keys must not be readable by others"
            );
        }
        let err = NodeTls::load(
            NodeId(3),
            &dir.join("ca.pem"),
            &dir.join("node-3.pem"),
            &dir.join("node-3.key"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("node-3.pem"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
