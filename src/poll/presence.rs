//! Whose Slack presence to poll next.
//!
//! `users.getPresence` takes one user per call and Slack allows ~50 calls a minute per
//! workspace, so the order matters: watched people (someone has them on screen) first, each
//! when their interval is due, everyone else in the time left, oldest poll first.
//!
//! The people of a connection sit in a queue ordered by last poll, so a pick looks at the front
//! rather than at everyone (a scan per pick was a quarter of a 50,000-person sweep's CPU), and
//! who is watched is read from the hub at most once a second, not once per person per pick, and
//! only when a subscription came or went or the people changed: with 10,000 people watched
//! through topics of their own, reading it cost a runtime thread 3-5 ms every second, which the
//! Slack events queued on its connections waited out (docs/benchmarks.md, session 24).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::domain::PersonCard;
use crate::hub::Watched;

/// How far past the front a pick looks for someone unwatched before taking the oldest anyway.
const SCAN: usize = 256;
/// How long a [`WatchView`] is trusted.
pub const VIEW_TTL: Duration = Duration::from_secs(1);

/// A tracked Slack user, as the loops of one connection know them.
pub struct Tracked {
    pub card: Arc<PersonCard>,
    pub updated: i64,
    pub trackable: bool,
    pub last_presence: Option<Instant>,
}

/// A connection's people by Slack id, with the poll queue kept in step.
#[derive(Default)]
pub struct People {
    by_slack_id: HashMap<String, Tracked>,
    /// `(last poll, Slack id)`: never-polled (`None`) first, then oldest.
    queue: BTreeSet<(Option<Instant>, String)>,
    by_person: HashMap<i64, String>,
    /// The part of `queue` watched through a topic of their own, in the same order, as of the last
    /// [`WatchView`]: a pick reads its front however many there are (a walk over them per pick
    /// was 6% of the server's CPU with 10,000 person topics watched).
    direct: BTreeSet<(Option<Instant>, String)>,
    /// People per Slack team: a watch view asks the hub about each team once, without walking
    /// everyone (which, once a second on 50,000 people, cost more than the sweep itself).
    teams: HashMap<String, usize>,
    /// Counts the changes a [`WatchView`] depends on: someone new, a Slack id now another
    /// person's, someone moved to another team.
    membership: u64,
}

impl Deref for People {
    type Target = HashMap<String, Tracked>;
    fn deref(&self) -> &Self::Target {
        &self.by_slack_id
    }
}

impl People {
    pub fn insert(&mut self, slack_id: String, t: Tracked) {
        let old = self
            .by_slack_id
            .get(&slack_id)
            .map(|old| (old.last_presence, old.card.clone()));
        let moved = old
            .as_ref()
            .is_none_or(|(_, card)| card.id != t.card.id || card.team_id != t.card.team_id);
        if moved {
            self.membership += 1;
        }
        match old {
            Some((last, card)) => {
                self.requeue(&slack_id, last, t.last_presence);
                self.by_person.remove(&card.id);
                if let Some(team) = card.team_id.as_deref()
                    && let Some(n) = self.teams.get_mut(team)
                {
                    *n -= 1;
                    if *n == 0 {
                        self.teams.remove(team);
                    }
                }
            }
            None => {
                self.queue.insert((t.last_presence, slack_id.clone()));
            }
        }
        if let Some(team) = &t.card.team_id {
            *self.teams.entry(team.clone()).or_default() += 1;
        }
        self.by_person.insert(t.card.id, slack_id.clone());
        self.by_slack_id.insert(slack_id, t);
    }

    pub fn set_trackable(&mut self, slack_id: &str, trackable: bool) -> Option<&Tracked> {
        let t = self.by_slack_id.get_mut(slack_id)?;
        t.trackable = trackable;
        Some(t)
    }

    /// Records a presence poll of `slack_id` now; returns the person and when they were polled
    /// before.
    pub fn polled(&mut self, slack_id: &str) -> Option<(Arc<PersonCard>, Option<Instant>)> {
        let t = self.by_slack_id.get_mut(slack_id)?;
        let before = t.last_presence;
        t.last_presence = Some(Instant::now());
        let (now, card) = (t.last_presence, t.card.clone());
        self.requeue(slack_id, before, now);
        Some((card, before))
    }

    /// Moves `slack_id` from its place at `from` to `to` in the poll queue, and in the queue of
    /// people watched directly if it is there.
    fn requeue(&mut self, slack_id: &str, from: Option<Instant>, to: Option<Instant>) {
        self.queue.remove(&(from, slack_id.to_owned()));
        self.queue.insert((to, slack_id.to_owned()));
        if self.direct.remove(&(from, slack_id.to_owned())) {
            self.direct.insert((to, slack_id.to_owned()));
        }
    }

    /// Marks who is watched through a topic of their own: exactly `ids`.
    fn watch_directly(&mut self, ids: &HashSet<i64>) {
        self.direct = ids
            .iter()
            .filter_map(|pid| self.by_person.get(pid))
            .filter_map(|id| Some((self.by_slack_id.get(id)?.last_presence, id.clone())))
            .collect();
    }
}

/// Who is watched, as the hub said at `at`.
pub struct WatchView {
    at: Instant,
    teams: HashSet<String>,
    people: HashSet<i64>,
    /// What it was made from: the hub's [`Watched::version`] and the people's `membership`.
    made_from: (u64, u64),
}

impl WatchView {
    /// Asks the hub about the teams and people of `people`, and marks the people watched
    /// directly in `people`.
    pub fn of(people: &mut People, watched: &Watched) -> WatchView {
        let view = WatchView {
            // Read first (fields are evaluated in order): a subscription made while the hub is
            // being asked moves the version past this, and the next `renew` asks again.
            made_from: (watched.version(), people.membership),
            at: Instant::now(),
            teams: people
                .teams
                .keys()
                .filter(|team| watched.team_watched(team))
                .cloned()
                .collect(),
            people: watched
                .watched_people()
                .into_iter()
                .filter(|id| people.by_person.contains_key(id))
                .collect(),
        };
        people.watch_directly(&view.people);
        view
    }

    pub fn fresh(&self) -> bool {
        self.at.elapsed() < VIEW_TTL
    }

    /// Trusts the view for another [`VIEW_TTL`] when nothing it was made from has changed, and
    /// makes it again otherwise.
    pub fn renew(&mut self, people: &mut People, watched: &Watched) {
        if (watched.version(), people.membership) == self.made_from {
            self.at = Instant::now();
        } else {
            *self = WatchView::of(people, watched);
        }
    }

    fn watches(&self, t: &Tracked) -> bool {
        t.card
            .team_id
            .as_deref()
            .is_some_and(|team| self.teams.contains(team))
            || self.people.contains(&t.card.id)
    }
}

/// The next person to poll: the watched person polled longest ago if their interval is due
/// (`true`), else someone unwatched polled longest ago, else the oldest watched person (`false`).
pub fn next_presence(
    people: &People,
    view: &WatchView,
    interval: Duration,
) -> Option<(String, bool)> {
    let trackable = |id: &String| people.by_slack_id.get(id).filter(|t| t.trackable);
    // The oldest watched person: through a watched team, the first such in the queue; directly,
    // the front of their own queue.
    let mut watched: Option<(Option<Instant>, &String)> = None;
    if !view.teams.is_empty() {
        watched = people
            .queue
            .iter()
            .find(|(_, id)| trackable(id).is_some_and(|t| view.watches(t)))
            .map(|(last, id)| (*last, id));
    }
    if let Some((last, id)) = people.direct.iter().find(|(_, id)| trackable(id).is_some())
        && watched.is_none_or(|(oldest, _)| *last < oldest)
    {
        watched = Some((*last, id));
    }
    let now = Instant::now();
    if let Some((last, id)) = watched
        && last.is_none_or(|l| now.duration_since(l) >= interval)
    {
        return Some((id.clone(), true));
    }
    let mut oldest = None;
    for (_, id) in people.queue.iter().take(SCAN) {
        let Some(t) = trackable(id) else { continue };
        oldest.get_or_insert(id);
        if !view.watches(t) {
            return Some((id.clone(), false));
        }
    }
    oldest
        .or_else(|| {
            people
                .queue
                .iter()
                .map(|(_, id)| id)
                .find(|id| trackable(id).is_some())
        })
        .map(|id| (id.clone(), false))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(id: i64, team: &str) -> Tracked {
        Tracked {
            card: Arc::new(PersonCard {
                id,
                organization_id: 1,
                topic: PersonCard::topic_for(id),
                team_id: Some(team.into()),
                name: format!("p{id}"),
                display_name: String::new(),
                image_72: String::new(),
            }),
            updated: 0,
            trackable: true,
            last_presence: None,
        }
    }

    /// People `U1`…`Un` of team `T1`, never polled.
    fn team_of(n: i64) -> People {
        let mut p = People::default();
        for i in 1..=n {
            p.insert(format!("U{i}"), person(i, "T1"));
        }
        p
    }

    /// A view of `teams` and `people` watched, marked in `p` as `WatchView::of` does.
    fn view(p: &mut People, teams: &[&str], people: &[i64]) -> WatchView {
        let v = WatchView {
            at: Instant::now(),
            teams: teams.iter().map(|t| t.to_string()).collect(),
            people: people.iter().copied().collect(),
            made_from: (0, p.membership),
        };
        p.watch_directly(&v.people);
        v
    }

    #[tokio::test(start_paused = true)]
    async fn watched_people_first_when_due_then_the_oldest_of_the_rest() {
        let mut p = team_of(5);
        let interval = Duration::from_secs(30);
        // Nobody watched: never-polled first, in id order, then the oldest.
        let none = view(&mut p, &[], &[]);
        for i in 1..=5 {
            let (id, w) = next_presence(&p, &none, interval).expect("pick");
            assert_eq!((id.as_str(), w), (format!("U{i}").as_str(), false));
            p.polled(&id);
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        assert_eq!(
            next_presence(&p, &none, interval).map(|x| x.0).as_deref(),
            Some("U1")
        );

        // U4 watched directly: not due yet, so the oldest unwatched goes.
        let direct = view(&mut p, &[], &[4]);
        assert_eq!(
            next_presence(&p, &direct, interval),
            Some(("U1".into(), false))
        );
        tokio::time::advance(interval).await;
        assert_eq!(
            next_presence(&p, &direct, interval),
            Some(("U4".into(), true))
        );
        p.polled("U4");

        // The whole team watched: the oldest member when due.
        let team = view(&mut p, &["T1"], &[]);
        assert_eq!(
            next_presence(&p, &team, interval),
            Some(("U1".into(), true))
        );

        // Untrackable people are skipped.
        p.set_trackable("U1", false);
        assert_eq!(
            next_presence(&p, &team, interval),
            Some(("U2".into(), true))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn people_watched_directly_are_polled_oldest_first_through_their_own_queue() {
        let mut p = team_of(6);
        let interval = Duration::from_secs(30);
        let v = view(&mut p, &[], &[2, 4, 6]);
        let mut picked = Vec::new();
        for _ in 0..3 {
            let (id, watched) = next_presence(&p, &v, interval).expect("pick");
            assert!(watched);
            p.polled(&id);
            picked.push(id);
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        assert_eq!(picked, ["U2", "U4", "U6"]);
        // A sweep re-inserting U2 keeps it watched and where it was in the order.
        let mut again = person(2, "T1");
        again.last_presence = p["U2"].last_presence;
        p.insert("U2".into(), again);
        tokio::time::advance(interval).await;
        assert_eq!(next_presence(&p, &v, interval), Some(("U2".into(), true)));
        // Nobody watched any more: the direct queue empties with the next view.
        let none = view(&mut p, &[], &[]);
        assert!(p.direct.is_empty());
        assert_eq!(next_presence(&p, &none, interval).map(|x| x.1), Some(false));
    }

    #[test]
    fn reinserting_keeps_one_queue_entry_per_person() {
        let mut p = People::default();
        p.insert("U1".into(), person(1, "T1"));
        p.polled("U1");
        let mut again = person(1, "T1");
        again.last_presence = p["U1"].last_presence;
        p.insert("U1".into(), again);
        assert_eq!(p.queue.len(), 1);
        assert_eq!(p.by_person.len(), 1);
    }

    #[test]
    fn the_view_asks_about_each_team_that_has_people() {
        let hub = crate::hub::Hub::default();
        let _sub = hub.subscribe("team:T2");
        let mut p = People::default();
        p.insert("U1".into(), person(1, "T1"));
        p.insert("U2".into(), person(2, "T1"));
        assert!(WatchView::of(&mut p, &hub.watched()).teams.is_empty());
        // U2 moves to the watched team; T1 keeps U1.
        p.insert("U2".into(), person(2, "T2"));
        let v = WatchView::of(&mut p, &hub.watched());
        assert!(v.teams.contains("T2") && v.teams.len() == 1);
        assert_eq!(p.teams.get("T1"), Some(&1));
        // The last of T2 leaves it: nobody is left to watch there.
        p.insert("U2".into(), person(2, "T1"));
        assert!(WatchView::of(&mut p, &hub.watched()).teams.is_empty());
        assert!(!p.teams.contains_key("T2"));
    }

    #[test]
    fn a_view_is_made_again_only_when_subscriptions_or_people_changed() {
        let hub = crate::hub::Hub::default();
        let watched = hub.watched();
        let mut p = team_of(3);
        let direct = |p: &People| {
            p.direct
                .iter()
                .map(|(_, id)| id.clone())
                .collect::<Vec<_>>()
        };
        let mut v = WatchView::of(&mut p, &watched);
        assert!(direct(&p).is_empty());

        // A subscriber to U2's own topic.
        let u2 = hub.subscribe(&PersonCard::topic_for(2));
        v.renew(&mut p, &watched);
        assert_eq!(direct(&p), ["U2"]);
        // Nothing changed since: the view is kept as it is, not made again (which would put U2
        // back).
        p.direct.clear();
        v.renew(&mut p, &watched);
        assert!(direct(&p).is_empty());
        v = WatchView::of(&mut p, &watched);

        // A subscriber arrives before the person it watches: made again once they are there.
        let _u4 = hub.subscribe(&PersonCard::topic_for(4));
        v.renew(&mut p, &watched);
        assert_eq!(direct(&p), ["U2"]);
        p.insert("U4".into(), person(4, "T1"));
        v.renew(&mut p, &watched);
        assert_eq!(direct(&p), ["U2", "U4"]);

        // A subscriber leaves.
        drop(u2);
        v.renew(&mut p, &watched);
        assert_eq!(direct(&p), ["U4"]);

        // Someone moves to a watched team.
        let _t2 = hub.subscribe("team:T2");
        v.renew(&mut p, &watched);
        assert!(v.teams.is_empty());
        p.insert("U1".into(), person(1, "T2"));
        v.renew(&mut p, &watched);
        assert!(v.teams.contains("T2"));
    }
}
