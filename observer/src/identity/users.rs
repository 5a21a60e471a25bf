//! uid to user name, from the host's user database (NSS), cached. Names are
//! the host's: inside a container the same uid may have another name.
use std::{collections::HashMap, sync::Arc};

/// Distinct uids remembered; past this the cache starts over.
const MAX_USERS: usize = 4096;

#[derive(Default)]
pub struct Users {
    names: HashMap<u32, Option<Arc<str>>>,
}

impl Users {
    pub fn name(&mut self, uid: u32) -> Option<Arc<str>> {
        if let Some(n) = self.names.get(&uid) {
            return n.clone();
        }
        if self.names.len() >= MAX_USERS {
            self.names.clear();
        }
        let name = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .map(|u| Arc::<str>::from(u.name));
        self.names.insert(uid, name.clone());
        name
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn root_is_root() {
        let mut u = super::Users::default();
        assert_eq!(u.name(0).as_deref(), Some("root"));
        assert_eq!(u.name(4_000_000_000), None);
    }
}
