//! Password authentication (SCRAM-SHA-256) for `sluice serve --password` or users
//! listed in the config file. Passwords are kept only as salted SCRAM keys,
//! derived once at start-up.

use std::collections::BTreeMap;

use async_trait::async_trait;
use pgwire::api::auth::sasl::scram::gen_salted_password;
use pgwire::api::auth::{AuthSource, LoginInfo, Password};
use pgwire::error::{PgWireError, PgWireResult};

/// PBKDF2 iterations for SCRAM, PostgreSQL's default.
pub const ITERATIONS: usize = 4096;

/// Salted SCRAM keys per user, and optionally one password any user name may use.
#[derive(Debug)]
pub struct Credentials {
    users: BTreeMap<String, (Vec<u8>, Vec<u8>)>,
    any_user: Option<(Vec<u8>, Vec<u8>)>,
}

fn salted(password: &str) -> (Vec<u8>, Vec<u8>) {
    let salt: Vec<u8> = (0..16).map(|_| rand_byte()).collect();
    let key = gen_salted_password(password, &salt, ITERATIONS);
    (salt, key)
}

/// A random byte from the operating system's hasher seed, which std draws from the
/// OS's random source: enough for a salt, without another dependency.
fn rand_byte() -> u8 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    h.finish() as u8
}

impl Credentials {
    /// Credentials for `users` (name -> password) and an optional password for any
    /// user name. `None` if there is nothing to check (trust).
    pub fn new(users: &BTreeMap<String, String>, any_user: Option<&str>) -> Option<Self> {
        if users.is_empty() && any_user.is_none() {
            return None;
        }
        Some(Credentials {
            users: users.iter().map(|(u, p)| (u.clone(), salted(p))).collect(),
            any_user: any_user.map(salted),
        })
    }
}

#[async_trait]
impl AuthSource for Credentials {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        let user = login.user().ok_or(PgWireError::UserNameRequired)?;
        let (salt, key) = self
            .users
            .get(user)
            .or(self.any_user.as_ref())
            .ok_or_else(|| PgWireError::InvalidPassword(user.to_string()))?;
        Ok(Password::new(Some(salt.clone()), key.clone()))
    }
}
