//! The reference model of `daemon::assembly_props`: the documented assembly rules
//! (docs/PROTOCOL.md "Assembly", "Sender restarts", "Conversation capacity") restated plainly,
//! over small ids (`u8` conversations, message tags) instead of the wire types.

use std::collections::{BTreeMap, HashSet};

use gsdnet_edge::daemon::assembly::{AssemblySettings, Counters, RESTART_FRAMES};
use gsdnet_edge::modality::Modalities;
use gsdnet_edge::protocol::{Modality, RejectReason};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    Feat,
    Start,
    End,
    Drop,
}

/// A sensor message that passed the vector checks, as the model sees it.
#[derive(Debug, Clone, Copy)]
pub struct Sm {
    pub kind: Kind,
    pub conv: u8,
    pub utt: u32,
    pub m: usize,
    pub speaker: u16,
}

/// A slot: awaited, arrived (from message `tag`) or missing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Slot {
    Wait,
    Got(usize),
    Miss,
}

pub struct MUtt {
    pub opened: u64,
    pub ended: Option<u64>,
    pub speaker: Option<u16>,
    pub slots: [Slot; 3],
}

/// A release of a non-empty utterance: conversation, session, utterance, speaker, message tag
/// per modality.
pub type Rel = (u8, u64, u32, u16, [Option<usize>; 3]);

pub struct MConv {
    pub session: u64,
    pub open: BTreeMap<u32, MUtt>,
    pub released: u64,
    pub last: Option<u32>,
    pub last_avail: u8,
    pub active: u64,
    pub behind: Vec<usize>,
}

impl MConv {
    pub fn rank(&self) -> u8 {
        let data = self
            .open
            .values()
            .any(|p| p.slots.iter().any(|s| matches!(s, Slot::Got(_))));
        if self.released > 0 {
            2
        } else {
            u8::from(data)
        }
    }

    pub fn release(&mut self, conv: u8, out: &mut Vec<Rel>, k: &mut Counters) {
        while let Some(e) = self.open.first_entry() {
            if e.get().slots.contains(&Slot::Wait) {
                break;
            }
            let (utt, p) = e.remove_entry();
            let got = p.slots.map(|s| if let Slot::Got(t) = s { Some(t) } else { None });
            self.last = Some(utt);
            self.last_avail = (0..3).filter(|&m| got[m].is_some()).map(|m| 1u8 << m).sum();
            if self.last_avail == 0 {
                k.empty_utterances += 1;
                continue;
            }
            self.released += 1;
            out.push((conv, self.session, utt, p.speaker.unwrap_or(0), got));
        }
    }

    pub fn flush(&mut self, conv: u8, out: &mut Vec<Rel>, k: &mut Counters) {
        self.open
            .values_mut()
            .flat_map(|p| p.slots.iter_mut())
            .filter(|s| **s == Slot::Wait)
            .for_each(|s| *s = Slot::Miss);
        k.utterances_flushed += self.open.len() as u64;
        self.release(conv, out, k);
    }
}

/// The documented rules, restated plainly; `replayed` = held refused messages applied at a restart.
pub struct Model {
    pub s: AssemblySettings,
    pub mods: Modalities,
    pub convs: BTreeMap<u8, MConv>,
    pub next_session: u64,
    pub k: Counters,
    pub replayed: HashSet<usize>,
    /// Releases of deadlines passed before a refused message, returned by the next poll.
    pub deferred: Vec<Rel>,
}

impl Model {
    pub fn new_conv(&mut self, conv: u8, now: u64) {
        self.next_session += 1;
        let c = MConv {
            session: self.next_session,
            open: BTreeMap::new(),
            released: 0,
            last: None,
            last_avail: 0,
            active: now,
            behind: Vec::new(),
        };
        self.convs.insert(conv, c);
    }

    /// A sensor message after the deadlines up to `now` applied: lateness, restart evidence.
    pub fn handle(&mut self, tag: usize, log: &[Option<Sm>], now: u64, out: &mut Vec<Rel>) -> Result<(), RejectReason> {
        let msg = log[tag].expect("sensor message");
        let boundary = matches!(msg.kind, Kind::Start | Kind::End);
        let Some(c) = self.convs.get_mut(&msg.conv) else {
            return self.apply(tag, log, now, out);
        };
        let Some(last) = c.last.filter(|&l| msg.utt <= l) else {
            return self.apply(tag, log, now, out);
        };
        let repeat = !boundary && c.last_avail & (1 << msg.m) != 0;
        if msg.utt == last && !repeat {
            return if boundary { Ok(()) } else { Err(RejectReason::Late) };
        }
        c.behind.push(tag);
        if last - msg.utt > self.s.max_open_utterances as u32 || c.behind.len() >= RESTART_FRAMES {
            return self.restart(msg.conv, log, now, out);
        }
        if boundary {
            Ok(())
        } else {
            Err(RejectReason::Late)
        }
    }

    /// The current message is the last held one: its own answer is the message's answer.
    pub fn restart(&mut self, conv: u8, log: &[Option<Sm>], now: u64, out: &mut Vec<Rel>) -> Result<(), RejectReason> {
        let mut old = self.convs.remove(&conv).expect("open");
        old.flush(conv, out, &mut self.k);
        self.k.restarts += 1;
        self.new_conv(conv, now);
        let (&current, held) = old.behind.split_last().expect("the current message is held");
        for &earlier in held {
            let refused = matches!(log[earlier].map(|m| m.kind), Some(Kind::Feat | Kind::Drop));
            if self.replay(earlier, log, now, out).is_ok() && refused {
                self.k.late_replayed += 1;
                self.replayed.insert(earlier);
            }
        }
        self.replay(current, log, now, out)
    }

    /// A held message in the new session: what it released is final (a message naming it or
    /// an older id is refused, a boundary ignored); never held again.
    pub fn replay(&mut self, tag: usize, log: &[Option<Sm>], now: u64, out: &mut Vec<Rel>) -> Result<(), RejectReason> {
        let msg = log[tag].expect("sensor message");
        let boundary = matches!(msg.kind, Kind::Start | Kind::End);
        match self.convs.get(&msg.conv).and_then(|c| c.last) {
            Some(last) if msg.utt <= last => {
                if boundary {
                    Ok(())
                } else {
                    Err(RejectReason::Late)
                }
            }
            _ => self.apply(tag, log, now, out),
        }
    }

    pub fn apply(&mut self, tag: usize, log: &[Option<Sm>], now: u64, out: &mut Vec<Rel>) -> Result<(), RejectReason> {
        let msg = log[tag].expect("sensor message");
        if !self.convs.contains_key(&msg.conv) {
            self.admit(msg.conv, now, out)?;
        }
        let c = self.convs.get_mut(&msg.conv).expect("admitted");
        if !c.open.contains_key(&msg.utt) && c.open.len() >= self.s.max_open_utterances {
            return Err(RejectReason::Capacity);
        }
        let slots = Modality::ALL.map(|m| if self.mods.has(m) { Slot::Wait } else { Slot::Miss });
        let p = c.open.entry(msg.utt).or_insert(MUtt {
            opened: now,
            ended: None,
            speaker: None,
            slots,
        });
        if msg.kind != Kind::Drop {
            p.speaker.get_or_insert(msg.speaker);
        }
        match msg.kind {
            Kind::Feat if matches!(p.slots[msg.m], Slot::Got(_)) => return Err(RejectReason::Duplicate),
            Kind::Feat => p.slots[msg.m] = Slot::Got(tag),
            Kind::Drop if p.slots[msg.m] == Slot::Wait => p.slots[msg.m] = Slot::Miss,
            Kind::End => _ = p.ended.get_or_insert(now),
            _ => {}
        }
        c.active = now;
        c.behind.clear();
        c.release(msg.conv, out, &mut self.k);
        Ok(())
    }

    pub fn admit(&mut self, conv: u8, now: u64, out: &mut Vec<Rel>) -> Result<(), RejectReason> {
        if self.convs.len() >= self.s.max_conversations {
            let idle = self.s.evict_idle_ms;
            let victim = self
                .convs
                .iter()
                .filter(|(_, c)| c.rank() < 2 || now - c.active >= idle)
                .min_by_key(|(_, c)| (c.rank(), c.active, c.session));
            let victim = *victim.ok_or(RejectReason::Capacity)?.0;
            self.convs
                .remove(&victim)
                .expect("open")
                .flush(victim, out, &mut self.k);
            self.k.evicted += 1;
        }
        self.new_conv(conv, now);
        Ok(())
    }

    pub fn reset(&mut self, conv: u8, out: &mut Vec<Rel>) {
        self.convs
            .remove(&conv)
            .into_iter()
            .for_each(|mut c| c.flush(conv, out, &mut self.k));
    }

    pub fn poll(&mut self, now: u64, out: &mut Vec<Rel>) {
        out.append(&mut self.deferred);
        let s = &self.s;
        for (&id, c) in &mut self.convs {
            for p in c.open.values_mut() {
                let base = p.ended.unwrap_or(p.opened + s.max_utterance_ms);
                let due = p
                    .slots
                    .iter_mut()
                    .zip(s.deadline_ms)
                    .filter(|(slot, d)| **slot == Slot::Wait && now >= base + d);
                due.for_each(|(slot, _)| *slot = Slot::Miss);
            }
            c.release(id, out, &mut self.k);
        }
        self.convs
            .retain(|_, c| !c.open.is_empty() || now - c.active < s.idle_conversation_ms);
    }

    pub fn flush_all(&mut self, out: &mut Vec<Rel>) {
        out.append(&mut self.deferred);
        let mut ids: Vec<(u64, u8)> = self.convs.iter().map(|(&id, c)| (c.session, id)).collect();
        ids.sort();
        for (_, id) in ids {
            let c = self.convs.get_mut(&id).expect("open");
            c.flush(id, out, &mut self.k);
        }
    }
}
