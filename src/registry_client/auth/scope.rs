//! The access a registry request needs, in the token protocol's terms
//! (`repository:<name>:pull,push`), and the cache key of the token that grants it.

use crate::operations::reference::Repository;

/// The access a request needs: pull or push on one or more repositories (a
/// cross-repository mount needs push on the target and pull on the source).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Scope {
    entries: Vec<(Repository, bool)>,
}

impl Scope {
    pub(crate) fn pull(repository: &Repository) -> Self {
        Self {
            entries: vec![(repository.clone(), false)],
        }
    }

    pub(crate) fn push(repository: &Repository) -> Self {
        Self {
            entries: vec![(repository.clone(), true)],
        }
    }

    /// Whether this is pull on one repository.
    pub(crate) fn single_pull(&self) -> bool {
        matches!(self.entries.as_slice(), [(_, false)])
    }

    /// Adds pull access on another repository.
    pub(crate) fn and_pull(mut self, repository: &Repository) -> Self {
        if !self.entries.iter().any(|(r, _)| r == repository) {
            self.entries.push((repository.clone(), false));
        }
        self
    }

    /// The scope strings of the token protocol.
    pub(crate) fn texts(&self) -> Vec<String> {
        self.entries
            .iter()
            .map(|(repository, push)| {
                let actions = if *push { "pull,push" } else { "pull" };
                format!("repository:{repository}:{actions}")
            })
            .collect()
    }

    pub(crate) fn key(&self) -> String {
        let mut texts = self.texts();
        texts.sort();
        texts.join(" ")
    }

    /// The same repositories with push everywhere: a token for that also serves this.
    pub(crate) fn widened(&self) -> Self {
        Self {
            entries: self
                .entries
                .iter()
                .map(|(r, _)| (r.clone(), true))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_combine_and_key_ignores_order() {
        let a: Repository = "team/app".parse().unwrap();
        let b: Repository = "base/os".parse().unwrap();
        let scope = Scope::push(&a).and_pull(&b);
        assert_eq!(
            scope.texts(),
            ["repository:team/app:pull,push", "repository:base/os:pull"]
        );
        let other = Scope {
            entries: vec![(b.clone(), false), (a.clone(), true)],
        };
        assert_eq!(scope.key(), other.key());
        assert_eq!(Scope::pull(&a).and_pull(&a), Scope::pull(&a));
    }
}
