//! Who may connect, and as what. Users are listed in the config file with a
//! SCRAM-SHA-256 verifier (PostgreSQL's `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`,
//! which `sluice passwd` prints) and a role; the server never holds a password.
//! An unknown user name goes through the same SCRAM exchange as a known one
//! (against a decoy verifier) and fails the same way, so names cannot be probed.

use std::collections::BTreeMap;

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use pgwire::api::auth::sasl::scram::{gen_salted_password, ScramSecret};
use pgwire::api::auth::{AuthSource, LoginInfo, Password};
use pgwire::error::{PgWireError, PgWireResult};
use serde::Deserialize;
use sluice_query::session::Role;

/// PBKDF2 iterations for verifiers `sluice passwd` makes: PostgreSQL's default.
pub const ITERATIONS: usize = 4096;

/// A SCRAM-SHA-256 verifier: what the server checks a client's proof against.
#[derive(Clone, PartialEq, Eq)]
pub struct Verifier {
    salt: Vec<u8>,
    iterations: usize,
    stored_key: Vec<u8>,
    server_key: Vec<u8>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// The verifier of `password` with a fresh random salt.
    pub fn new(password: &str) -> Verifier {
        let salt: Vec<u8> = (0..16).map(|_| random_byte()).collect();
        Verifier::derive(password.as_bytes(), salt, ITERATIONS)
    }

    fn derive(secret: &[u8], salt: Vec<u8>, iterations: usize) -> Verifier {
        // SCRAM's Hi() is PBKDF2; pgwire's helper takes the password as text.
        let salted = gen_salted_password(&String::from_utf8_lossy(secret), &salt, iterations);
        match ScramSecret::verifier_from_salted_password(salt.clone(), salted, iterations) {
            ScramSecret::Verifier {
                stored_key,
                server_key,
                ..
            } => Verifier {
                salt,
                iterations,
                stored_key,
                server_key,
            },
            // verifier_from_salted_password always makes a Verifier.
            ScramSecret::SaltedPassword { .. } => Verifier {
                salt,
                iterations,
                stored_key: Vec::new(),
                server_key: Vec::new(),
            },
        }
    }

    /// Reads PostgreSQL's text form of a verifier.
    ///
    /// # Errors
    /// Text that is not `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`
    /// with base64 parts (a plain password among them).
    pub fn parse(text: &str) -> Result<Verifier, String> {
        let bad = || {
            "not a SCRAM-SHA-256 verifier (SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>); \
             `sluice passwd` makes one from a password"
                .to_string()
        };
        let rest = text.strip_prefix("SCRAM-SHA-256$").ok_or_else(bad)?;
        let (params, keys) = rest.split_once('$').ok_or_else(bad)?;
        let (iterations, salt) = params.split_once(':').ok_or_else(bad)?;
        let (stored, server) = keys.split_once(':').ok_or_else(bad)?;
        let decode = |s: &str| STANDARD.decode(s).map_err(|_| bad());
        let verifier = Verifier {
            iterations: iterations.parse().map_err(|_| bad())?,
            salt: decode(salt)?,
            stored_key: decode(stored)?,
            server_key: decode(server)?,
        };
        if verifier.iterations == 0
            || verifier.salt.is_empty()
            || verifier.stored_key.len() != 32
            || verifier.server_key.len() != 32
        {
            return Err(bad());
        }
        Ok(verifier)
    }

    fn secret(&self) -> ScramSecret {
        ScramSecret::Verifier {
            salt: self.salt.clone(),
            iterations: self.iterations,
            stored_key: self.stored_key.clone(),
            server_key: self.server_key.clone(),
        }
    }
}

impl std::fmt::Display for Verifier {
    /// PostgreSQL's text form, as `pg_authid.rolpassword` holds it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            STANDARD.encode(&self.salt),
            STANDARD.encode(&self.stored_key),
            STANDARD.encode(&self.server_key)
        )
    }
}

/// A random byte from the operating system's hasher seed, which std draws from
/// the OS's random source: enough for a salt, without another dependency.
fn random_byte() -> u8 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    h.finish() as u8
}

/// A user as the config file lists it: a verifier alone (the user is an
/// admin), or a table with the verifier and a role.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum UserEntry {
    /// `name = "SCRAM-SHA-256$..."`
    Verifier(String),
    /// `[users.name]` with `password = "SCRAM-SHA-256$..."` and `role`.
    Full {
        /// The SCRAM-SHA-256 verifier.
        password: String,
        /// `admin` (the default), `writer` or `reader`.
        #[serde(default)]
        role: Option<String>,
    },
}

/// The users the server admits, with their roles.
#[derive(Debug)]
pub struct Credentials {
    users: BTreeMap<String, (Verifier, Role)>,
    /// Makes each unknown name's decoy verifier: stable for the server's life,
    /// so a name asked twice gets the same salt, as a real one would.
    decoy_key: Vec<u8>,
}

impl Credentials {
    /// Reads the config's users; `None` when there are none (trust).
    ///
    /// # Errors
    /// An entry whose password is not a verifier, or an unknown role.
    pub fn new(users: &BTreeMap<String, UserEntry>) -> Result<Option<Credentials>, String> {
        if users.is_empty() {
            return Ok(None);
        }
        let mut out = BTreeMap::new();
        for (name, entry) in users {
            let (password, role) = match entry {
                UserEntry::Verifier(v) => (v, None),
                UserEntry::Full { password, role } => (password, role.as_deref()),
            };
            let verifier = Verifier::parse(password).map_err(|e| format!("users.{name}: {e}"))?;
            let role = match role {
                None => Role::Admin,
                Some(r) => Role::parse(r).ok_or_else(|| {
                    format!("users.{name}: role \"{r}\" is not admin, writer or reader")
                })?,
            };
            out.insert(name.clone(), (verifier, role));
        }
        Ok(Some(Credentials {
            users: out,
            decoy_key: (0..32).map(|_| random_byte()).collect(),
        }))
    }

    /// Each user's role.
    pub fn roles(&self) -> BTreeMap<String, Role> {
        self.users
            .iter()
            .map(|(name, (_, role))| (name.clone(), *role))
            .collect()
    }

    /// The role of `user` if `password` is theirs (HTTP Basic on `/query`):
    /// the password is hashed with the verifier's salt and iterations and
    /// its StoredKey compared. An unknown name costs the same work.
    pub fn check_password(&self, user: &str, password: &str) -> Option<Role> {
        let (verifier, role) = match self.users.get(user) {
            Some((v, role)) => (v.clone(), Some(*role)),
            None => (self.decoy(user), None),
        };
        let candidate = Verifier::derive(
            password.as_bytes(),
            verifier.salt.clone(),
            verifier.iterations,
        );
        // Compare every byte, whatever differs first.
        let differ = candidate
            .stored_key
            .iter()
            .zip(&verifier.stored_key)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        (differ == 0 && candidate.stored_key.len() == verifier.stored_key.len())
            .then_some(role)
            .flatten()
    }

    /// A verifier no password matches, the same for the same name.
    fn decoy(&self, user: &str) -> Verifier {
        let mut seed = self.decoy_key.clone();
        seed.extend_from_slice(user.as_bytes());
        let salt = gen_salted_password(user, &self.decoy_key, 1)[..16].to_vec();
        // A secret nobody knows: the key and name, hashed.
        Verifier::derive(
            &gen_salted_password(&STANDARD.encode(&seed), &salt, 1),
            salt,
            ITERATIONS,
        )
    }
}

#[async_trait]
impl AuthSource for Credentials {
    /// Not used: SCRAM reads [`AuthSource::get_scram_secret`], and no other
    /// method is offered.
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        Err(PgWireError::InvalidPassword(
            login.user().unwrap_or_default().to_string(),
        ))
    }

    async fn get_scram_secret(&self, login: &LoginInfo) -> PgWireResult<(ScramSecret, Option<()>)> {
        let user = login.user().ok_or(PgWireError::UserNameRequired)?;
        let secret = match self.users.get(user) {
            Some((verifier, _)) => verifier.secret(),
            None => self.decoy(user).secret(),
        };
        Ok((secret, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifiers_print_and_parse_as_postgresql_writes_them() {
        let v = Verifier::new("s3cret");
        let text = v.to_string();
        assert!(text.starts_with("SCRAM-SHA-256$4096:"), "{text}");
        assert_eq!(Verifier::parse(&text), Ok(v));
        // PostgreSQL 15's verifier of "s3cret" (from pg_authid), read as is and
        // equal to the one derived here from its salt.
        let pg = "SCRAM-SHA-256$4096:CiLKggUUt4E/dqoEfaQkxQ==$CPjsz09DtjxuF7vkcpFmde2r0oOPXipkNRY9lkrCvuM=:c4qSNTNtFT/jhda2ckverW5z/WVx3f3X+g+o1Mt/skU=";
        let parsed = Verifier::parse(pg).unwrap();
        assert_eq!(
            Verifier::derive(b"s3cret", parsed.salt.clone(), parsed.iterations),
            parsed
        );
        assert_eq!(parsed.to_string(), pg);
        assert!(Verifier::parse("b0b").is_err());
        assert!(Verifier::parse("SCRAM-SHA-256$4096:c2FsdA==$AAAA:AAAA").is_err());
    }

    #[test]
    fn http_passwords_check_against_the_verifier() {
        let mut users = BTreeMap::new();
        users.insert(
            "ana".to_string(),
            UserEntry::Full {
                password: Verifier::new("s3cret").to_string(),
                role: Some("reader".into()),
            },
        );
        let credentials = Credentials::new(&users).unwrap().unwrap();
        assert_eq!(
            credentials.check_password("ana", "s3cret"),
            Some(Role::Reader)
        );
        assert_eq!(credentials.check_password("ana", "s3cret "), None);
        assert_eq!(credentials.check_password("bob", "s3cret"), None);
    }

    #[test]
    fn plain_passwords_and_unknown_roles_are_refused() {
        let users = |entry: UserEntry| BTreeMap::from([("bob".to_string(), entry)]);
        let err = Credentials::new(&users(UserEntry::Verifier("b0b".into()))).unwrap_err();
        assert!(
            err.contains("users.bob") && err.contains("sluice passwd"),
            "{err}"
        );
        let v = Verifier::new("x").to_string();
        let err = Credentials::new(&users(UserEntry::Full {
            password: v.clone(),
            role: Some("root".into()),
        }))
        .unwrap_err();
        assert!(err.contains("root"), "{err}");
        let c = Credentials::new(&users(UserEntry::Full {
            password: v,
            role: Some("reader".into()),
        }))
        .unwrap()
        .unwrap();
        assert_eq!(c.roles()["bob"], Role::Reader);
        // A decoy is stable per name and differs between names.
        assert_eq!(c.decoy("mallory"), c.decoy("mallory"));
        assert_ne!(c.decoy("mallory").salt, c.decoy("eve").salt);
    }
}
