//! Property tests of the utterance assembler (`src/daemon/assembly`): random sequences of
//! `Features` (right and wrong lengths, NaN, infinities), `UtteranceStart`, `UtteranceEnd`,
//! `Dropout`, `Reset` and daemon-only messages over 2-6 conversations with utterance ids that
//! mostly advance and sometimes jump back, interleaved with `poll` on a non-decreasing clock
//! (steps of 0..=2000 ms), ended by `flush_all`. The served model has a random two or three of
//! the modalities with sizes 1-6 (messages for the others are `NoSuchModality`), W = 3,
//! deadlines 100-300 ms, 1-3 conversations and 1-4 open utterances at most: lateness,
//! duplicates, capacity, eviction, idle expiry and sender restarts all happen (the test asserts
//! that they do).
//!
//! Every `Features` message carries values that name it (`tag * 8 + j`), so each released
//! vector says which message it came from. Properties:
//! 1. nothing panics;
//! 2. after every step `open_conversations() <= max_conversations`, `open_utterances() <=
//!    max_conversations * max_open_utterances`; every window has 1..=W utterances; a `poll`
//!    before `next_deadline()` releases nothing (idle expiry is not a deadline);
//! 3. coverage: each (conversation, session, utterance) closes at most one window and each
//!    message's vector is released at most once; after `flush_all` every `Features` answered
//!    `Ok` has been released, and every released vector whose
//!    message was refused was refused `Late`, held as restart evidence and replayed into the new
//!    session; those replays (with the held `Dropout`s) are exactly `counters().late_replayed`;
//! 4. per session, each window is the last <= W released non-empty utterances in release order,
//!    `first_position + len` grows by exactly 1 per window, the closed ids strictly increase;
//! 5. a released vector is bit-for-bit the accepted one, in the slot of its (conversation,
//!    utterance, modality).
//!
//! Which messages are held, replayed or refused is decided by `Model` (util/prop/
//! assembly_model.rs), a plain restatement of
//! the documented rules (docs/PROTOCOL.md "Assembly"); its answers, releases (with speakers),
//! counters and open counts must equal the assembler's at every step, so 3 is exact.
//!
//! Budget: about 2 s (4000 cases of up to 200 steps) in `cargo test --release --test integration daemon::assembly_props`. Fixed seed unless
//! `PROPTEST_RNG_SEED` is set; `PROPTEST_CASES` overrides the case count.

use std::collections::{BTreeMap, HashMap, HashSet};

use proptest::collection::vec as pvec;
use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};

use crate::util::prop::assembly_model::{Kind, Model, Rel, Sm};
use gsdnet_edge::daemon::assembly::{Assembler, AssemblySettings, ClosedUtterance, Counters, WindowJob};
use gsdnet_edge::modality::Modalities;
use gsdnet_edge::protocol::{
    conversation_id, values, Boundary, ConversationId, Dropout, Features, Message, Modality, RejectReason,
};

const W: usize = 3;
const DEFAULT_SEED: u64 = 0x6173_7365_6d62_6c79;

// ---- generated input ----------------------------------------------------------------------

/// An utterance id: absolute (a jump, often behind: a sender restart) or near the sender's cursor.
#[derive(Debug, Clone, Copy)]
enum Utt {
    Abs(u32),
    Near(i8),
}

/// A Features vector: good, of a wrong length (`Len(n)` is never the right one), non-finite.
#[derive(Debug, Clone, Copy)]
enum Bad {
    No,
    Len(usize),
    NonFinite(usize, f32),
}

#[derive(Debug, Clone, Copy)]
enum What {
    Feat(usize, u16, Bad),
    Start(u16),
    End(u16),
    Drop(usize),
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Msg(u8, Utt, What),
    Reset(u8),
    Daemon(u8),
    Poll,
}

fn utt() -> impl Strategy<Value = Utt> {
    let near = prop_oneof![4 => Just(0i8), 2 => Just(1), 1 => Just(-1), 1 => Just(2)];
    prop_oneof![1 => (0u32..12).prop_map(Utt::Abs), 5 => near.prop_map(Utt::Near)]
}

fn bad() -> impl Strategy<Value = Bad> {
    let nonfinite = prop_oneof![Just(f32::NAN), Just(f32::INFINITY), Just(f32::NEG_INFINITY)];
    prop_oneof![14 => Just(Bad::No), 1 => (0usize..6).prop_map(Bad::Len), 1 => (0usize..4, nonfinite).prop_map(|(i, v)| Bad::NonFinite(i, v))]
}

fn op() -> impl Strategy<Value = Op> {
    // Conversations are taken modulo the case's count: two busy ones, the rest occasional.
    let (m, s, conv) = (0usize..3, 0u16..3, || prop_oneof![2 => 0u8..2, 1 => 0u8..6]);
    let what = prop_oneof![
        12 => (m.clone(), s.clone(), bad()).prop_map(|(m, s, b)| What::Feat(m, s, b)),
        2 => s.clone().prop_map(What::Start),
        3 => s.prop_map(What::End),
        3 => m.prop_map(What::Drop),
    ];
    let msg = (conv(), utt(), what).prop_map(|(c, u, w)| Op::Msg(c, u, w));
    prop_oneof![20 => msg, 1 => conv().prop_map(Op::Reset), 1 => (0u8..3).prop_map(Op::Daemon), 5 => Just(Op::Poll)]
}

/// Clock steps in ms.
fn dt() -> impl Strategy<Value = u64> {
    prop_oneof![3 => Just(0u64), 4 => 0u64..100, 2 => 0u64..400, 1 => 0u64..=2000]
}

fn settings() -> impl Strategy<Value = AssemblySettings> {
    let dl = [100u64..=300, 100u64..=300, 100u64..=300];
    let s = (1usize..=3, 1usize..=4, dl, 200u64..=3000, 800u64..=1200, 4000u64..=6000);
    s.prop_map(
        |(
            max_conversations,
            max_open_utterances,
            deadline_ms,
            max_utterance_ms,
            evict_idle_ms,
            idle_conversation_ms,
        )| {
            let window = W;
            AssemblySettings {
                window,
                windowing: gsdnet_edge::config::Windowing::Sliding,
                deadline_ms,
                max_utterance_ms,
                max_open_utterances,
                max_conversations,
                idle_conversation_ms,
                evict_idle_ms,
            }
        },
    )
}

/// The served model: TA, TV, AV or TAV, sizes 1..=6 (values name their message: see `tagged`).
fn modalities() -> impl Strategy<Value = Modalities> {
    let present = prop::sample::select(vec![
        [true, true, false],
        [true, false, true],
        [false, true, true],
        [true, true, true],
    ]);
    (present, [1usize..=6, 1usize..=6, 1usize..=6]).prop_map(|(p, sizes)| {
        Modalities::new(std::array::from_fn(|m| if p[m] { sizes[m] } else { 0 })).expect("two or three present")
    })
}

// ---- the run --------------------------------------------------------------------------------

/// The values of message `tag`'s modality m vector: they name the message.
/// The values of message `tag`'s vector of `size` values: they name the message.
fn tagged(tag: usize, size: usize) -> Vec<f32> {
    (0..size).map(|j| (tag * 8 + j) as f32).collect()
}

/// `size` is the model's for the modality (a modality it lacks: any length, refused anyway).
fn feature_values(tag: usize, size: usize, bad: Bad) -> Vec<f32> {
    let mut v = tagged(tag, size);
    match bad {
        Bad::No => {}
        Bad::Len(n) => v.resize(if n >= size { n + 1 } else { n }, 0.5),
        Bad::NonFinite(i, x) => v[i % size] = x,
    }
    v
}

/// The assembler, the model and everything observed, for the checks.
struct Run {
    real: Assembler,
    model: Model,
    ids: Vec<ConversationId>,
    now: u64,
    /// Per conversation, the sender's highest utterance id since its last jump or reset.
    cursor: Vec<u32>,
    log: Vec<Option<Sm>>,
    answers: Vec<Option<Result<(), RejectReason>>>,
    /// Per session: its conversation and its released closed utterances, in release order.
    sessions: HashMap<u64, (u8, Vec<ClosedUtterance>)>,
    closed: HashSet<(u8, u64, u32)>,
    /// Tags of the released vectors.
    released: HashSet<usize>,
}

impl Run {
    fn new(s: AssemblySettings, mods: Modalities, convs: u8) -> Self {
        let (k, replayed, deferred) = (Counters::default(), HashSet::new(), Vec::new());
        let model = Model {
            s: s.clone(),
            mods,
            convs: BTreeMap::new(),
            next_session: 0,
            k,
            replayed,
            deferred,
        };
        let ids = (0..convs).map(|c| conversation_id(&format!("c{c}")).unwrap()).collect();
        let (log, answers, sessions, closed, released) =
            (Vec::new(), Vec::new(), HashMap::new(), HashSet::new(), HashSet::new());
        Run {
            real: Assembler::new(s, mods),
            model,
            ids,
            now: 0,
            cursor: vec![0; convs as usize],
            log,
            answers,
            sessions,
            closed,
            released,
        }
    }

    /// The model's size of modality `m` (1 for one it lacks: such vectors are refused anyway).
    fn size(&self, m: usize) -> usize {
        self.model.mods.size(Modality::ALL[m]).unwrap_or(1)
    }

    fn utt(&mut self, conv: u8, u: Utt) -> u32 {
        let cur = &mut self.cursor[conv as usize];
        let (v, jump) = match u {
            Utt::Abs(a) => (a, true),
            Utt::Near(d) => ((i64::from(*cur) + i64::from(d)).max(0) as u32, false),
        };
        *cur = if jump { v } else { v.max(*cur) };
        v
    }

    /// The wire message of `op` and what the model sees of it (None: no sensor input or a bad vector).
    fn message(&mut self, tag: usize, op: Op) -> (Message, Option<Sm>) {
        let n = self.ids.len() as u8;
        let (c, u, what) = match op {
            Op::Msg(c, u, what) => (c % n, u, what),
            Op::Reset(c) => {
                self.cursor[(c % n) as usize] = 0;
                return (
                    Message::Reset {
                        conversation: self.ids[(c % n) as usize].clone(),
                    },
                    None,
                );
            }
            Op::Daemon(k) => {
                return (
                    [Message::StatusRequest, Message::HealthRequest, Message::Subscribe][k as usize].clone(),
                    None,
                )
            }
            Op::Poll => unreachable!("poll is no message"),
        };
        let (conversation, utterance) = (self.ids[c as usize].clone(), self.utt(c, u));
        let b = |speaker| Boundary {
            conversation: conversation.clone(),
            utterance,
            speaker,
            timestamp_us: 0,
        };
        let (msg, kind, m, speaker) = match what {
            What::Feat(m, speaker, bad) => {
                let values = values(&feature_values(tag, self.size(m), bad)).unwrap();
                let f = Features {
                    conversation: conversation.clone(),
                    utterance,
                    speaker,
                    modality: Modality::ALL[m],
                    timestamp_us: 0,
                    values,
                };
                (Message::Features(f), Kind::Feat, m, speaker)
            }
            What::Start(s) => (Message::UtteranceStart(b(s)), Kind::Start, 0, s),
            What::End(s) => (Message::UtteranceEnd(b(s)), Kind::End, 0, s),
            What::Drop(m) => (
                Message::Dropout(Dropout {
                    conversation: conversation.clone(),
                    utterance,
                    modality: Modality::ALL[m],
                    timestamp_us: 0,
                }),
                Kind::Drop,
                m,
                0,
            ),
        };
        let present = self.model.mods.has(Modality::ALL[m]) || matches!(what, What::Start(_) | What::End(_));
        let valid = present && !matches!(what, What::Feat(_, _, Bad::Len(_) | Bad::NonFinite(..)));
        (
            msg,
            valid.then_some(Sm {
                kind,
                conv: c,
                utt: utterance,
                m,
                speaker,
            }),
        )
    }

    fn step(&mut self, tag: usize, dt: u64, op: Op) -> Result<(), TestCaseError> {
        self.now += dt;
        self.log.push(None);
        self.answers.push(None);
        let mut expected = Vec::new();
        let jobs = if let Op::Poll = op {
            let due = self.real.next_deadline();
            self.model.poll(self.now, &mut expected);
            let jobs = self.real.poll(self.now);
            if due.is_none_or(|d| d > self.now) {
                prop_assert!(
                    jobs.is_empty(),
                    "poll at {} before next_deadline {:?} released {:?}",
                    self.now,
                    due,
                    jobs
                );
            }
            jobs
        } else {
            self.handle(tag, op, &mut expected)?
        };
        self.check_jobs(&jobs, expected)?;
        self.check_state()
    }

    /// Sends message `tag`: deadlines up to now apply first (their windows wait for the next
    /// poll if the message is refused); the answer must be the model's.
    fn handle(&mut self, tag: usize, op: Op, expected: &mut Vec<Rel>) -> Result<Vec<WindowJob>, TestCaseError> {
        let (msg, sm) = self.message(tag, op);
        let r = self.real.handle(&msg, self.now);
        let mut out = Vec::new();
        self.model.poll(self.now, &mut out);
        let want = match (op, sm) {
            (_, Some(sm)) => {
                self.log[tag] = Some(sm);
                self.model.handle(tag, &self.log, self.now, &mut out)
            }
            (Op::Reset(c), _) => {
                self.model.reset(c % self.ids.len() as u8, &mut out);
                Ok(())
            }
            (Op::Daemon(_), _) => Err(RejectReason::Unexpected),
            (Op::Msg(.., What::Feat(m, ..) | What::Drop(m)), _) if !self.model.mods.has(Modality::ALL[m]) => {
                Err(RejectReason::NoSuchModality)
            }
            (Op::Msg(.., What::Feat(_, _, Bad::Len(_))), _) => Err(RejectReason::WrongLength),
            _ => Err(RejectReason::NonFinite),
        };
        if want.is_ok() {
            expected.append(&mut out)
        } else {
            self.model.deferred.append(&mut out)
        }
        prop_assert_eq!(
            r.as_ref().map(|_| ()).map_err(|e| e.reason),
            want,
            "message {}: {:?}",
            tag,
            msg
        );
        self.answers[tag] = Some(want);
        Ok(r.unwrap_or_default())
    }

    /// Properties 2, 4, 5 for each window; the releases must be the model's.
    fn check_jobs(&mut self, jobs: &[WindowJob], mut expected: Vec<Rel>) -> Result<(), TestCaseError> {
        let mut got = Vec::new();
        for job in jobs {
            got.push(self.check_job(job)?);
        }
        // Across conversations `poll` releases in HashMap order; within a session in release order.
        got.sort_by_key(|r| r.1);
        expected.sort_by_key(|r| r.1);
        prop_assert_eq!(got, expected);
        Ok(())
    }

    fn check_job(&mut self, job: &WindowJob) -> Result<Rel, TestCaseError> {
        prop_assert!(
            (1..=W).contains(&job.utterances.len()),
            "window of {} utterances",
            job.utterances.len()
        );
        let conv = self.ids.iter().position(|id| *id == job.conversation);
        let conv = conv.ok_or_else(|| TestCaseError::fail(format!("unknown conversation {}", job.conversation)))? as u8;
        let last = job.utterances.last().expect("non-empty").clone();
        prop_assert!(
            self.closed.insert((conv, job.session, last.utterance)),
            "released twice: {:?}",
            job
        );
        let (owner, list) = self.sessions.entry(job.session).or_insert((conv, Vec::new()));
        prop_assert_eq!(*owner, conv, "session {} in two conversations", job.session);
        if let Some(prev) = list.last() {
            prop_assert!(
                prev.utterance < last.utterance,
                "session {}: {} released after {}",
                job.session,
                last.utterance,
                prev.utterance
            );
        }
        list.push(last.clone());
        let window = &list[list.len().saturating_sub(W)..];
        prop_assert_eq!(&job.utterances[..], window, "session {} window", job.session);
        prop_assert_eq!(job.first_position, (list.len() - window.len()) as u64);
        let mut tags = [None; 3];
        for (m, v) in last
            .features
            .iter()
            .enumerate()
            .filter_map(|(m, f)| Some((m, f.as_ref()?)))
        {
            let tag = v.first().map_or(usize::MAX, |x| *x as usize / 8);
            let sent = self.log.get(tag).copied().flatten();
            let right_slot =
                sent.is_some_and(|s| s.kind == Kind::Feat && (s.conv, s.utt, s.m) == (conv, last.utterance, m));
            prop_assert!(
                right_slot,
                "modality {} of utterance {} holds {:?}, sent as {:?}",
                m,
                last.utterance,
                v,
                sent
            );
            prop_assert_eq!(v, &tagged(tag, self.size(m)));
            prop_assert!(self.released.insert(tag), "message {} released twice", tag);
            tags[m] = Some(tag);
        }
        Ok((conv, job.session, last.utterance, last.speaker, tags))
    }

    /// Property 2, and the state must be the model's.
    fn check_state(&self) -> Result<(), TestCaseError> {
        let s = &self.model.s;
        prop_assert!(self.real.open_conversations() <= s.max_conversations);
        prop_assert!(self.real.open_utterances() <= s.max_conversations * s.max_open_utterances);
        prop_assert_eq!(self.real.counters(), self.model.k);
        prop_assert_eq!(self.real.open_conversations(), self.model.convs.len());
        prop_assert_eq!(
            self.real.open_utterances(),
            self.model.convs.values().map(|c| c.open.len()).sum::<usize>()
        );
        Ok(())
    }

    /// `flush_all`, then property 3 over the whole run.
    fn finish(&mut self) -> Result<(), TestCaseError> {
        let mut expected = Vec::new();
        self.model.flush_all(&mut expected);
        let jobs = self.real.flush_all();
        self.check_jobs(&jobs, expected)?;
        self.check_state()?;
        prop_assert_eq!(self.real.open_utterances(), 0);
        let is_feat = |t: usize| matches!(self.log[t], Some(Sm { kind: Kind::Feat, .. }));
        for (tag, answer) in self.answers.iter().enumerate() {
            let released = self.released.contains(&tag);
            match answer {
                Some(Ok(())) if is_feat(tag) => prop_assert!(released, "message {} accepted, never released", tag),
                Some(Err(r)) if released => {
                    prop_assert_eq!(*r, RejectReason::Late, "message {} refused, yet released", tag);
                    prop_assert!(
                        self.model.replayed.contains(&tag),
                        "message {} refused, released, not replayed",
                        tag
                    );
                }
                _ => {}
            }
        }
        for &t in self.model.replayed.iter().filter(|&&t| is_feat(t)) {
            prop_assert!(self.released.contains(&t), "replayed message {} never released", t);
        }
        prop_assert_eq!(self.model.replayed.len() as u64, self.real.counters().late_replayed);
        Ok(())
    }
}

// ---- the test -------------------------------------------------------------------------------

/// What a run exercised: counters, rejection reasons, full windows.
fn tally(totals: &mut BTreeMap<String, u64>, run: &Run) {
    let k = run.real.counters();
    let full = run
        .sessions
        .values()
        .map(|(_, l)| l.len().saturating_sub(W - 1) as u64)
        .sum();
    let counts = [
        ("restarts", k.restarts),
        ("late_replayed", k.late_replayed),
        ("evicted", k.evicted),
        ("empty", k.empty_utterances),
        ("full windows", full),
    ];
    let reasons = run
        .answers
        .iter()
        .flatten()
        .filter_map(|a| a.err())
        .map(|r| (format!("{r:?}"), 1));
    for (name, n) in counts.into_iter().map(|(name, n)| (name.to_string(), n)).chain(reasons) {
        *totals.entry(name).or_default() += n;
    }
}

#[test]
fn random_traffic_keeps_the_assembly_rules() {
    let totals = std::cell::RefCell::new(BTreeMap::new());
    let case = (settings(), modalities(), 2u8..=6, pvec((dt(), op()), 1..200));
    let mut runner = TestRunner::new(crate::util::prop::config(4000, DEFAULT_SEED));
    let result = runner.run(&case, |(s, mods, convs, steps)| {
        let mut run = Run::new(s, mods, convs);
        for (tag, &(dt, op)) in steps.iter().enumerate() {
            run.step(tag, dt, op)?;
        }
        run.finish()?;
        tally(&mut totals.borrow_mut(), &run);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let totals = totals.into_inner();
    eprintln!("exercised: {totals:?}");
    for what in [
        "restarts",
        "late_replayed",
        "evicted",
        "empty",
        "full windows",
        "Late",
        "Duplicate",
        "Capacity",
        "WrongLength",
        "NonFinite",
        "Unexpected",
        "NoSuchModality",
    ] {
        assert!(
            totals.get(what).is_some_and(|&n| n > 0),
            "never exercised: {what} ({totals:?})"
        );
    }
}
