"""A sender's account of its own input (docs/PROTOCOL.md, "Notices and limits"): which utterances
it sent with at least one modality, which of them a result covered, and what the daemon refused,
by reason, from the `Notice`s of a connection subscribed with `SubscribeNotices`. It is fed the
decoded (tag, message) pairs the sender receives; `lines()` and `exit_code()` are the report a
sender gives at exit. Standard library only, no IO.
"""

from gsdnet_client import NOTICE, RESULT, SCORED

# Notices kept verbatim for the report (their counts all go into `refused`).
KEPT_NOTICES = 8


class Ledger:
    def __init__(self):
        self.expected = {}  # conversation -> ids sent with at least one modality (a result is due)
        self.covered = {}  # conversation -> ids of `expected` a result named
        self.labels = {}  # (conversation, id) -> label name of the latest result naming it
        self.refused = {}  # reason -> refusals noticed
        self.notices = []  # the first KEPT_NOTICES notices
        self.empty = 0  # utterances sent without any modality (the daemon skips them)
        self.written_off = 0  # uncovered utterances the sender stopped waiting for

    def sent(self, conversation, utterance, with_data=True):
        """Records an utterance sent; `with_data` False = every modality missing (no result due).
        Call it before the utterance's first frame: its result may come back before its end is
        sent, and a result for an utterance not recorded yet does not cover it."""
        if with_data:
            self.expected.setdefault(conversation, set()).add(utterance)
        else:
            self.empty += 1

    def on_message(self, tag, msg):
        """Takes what the sender received; returns True when it was a result or a notice."""
        if tag in (RESULT, SCORED):
            due = self.expected.get(msg["conversation"], set())
            got = self.covered.setdefault(msg["conversation"], set())
            for u in msg["utterances"]:
                self.labels[(msg["conversation"], u["utterance"])] = u["label_name"]
                if u["utterance"] in due:
                    got.add(u["utterance"])
            return True
        if tag == NOTICE:
            self.refused[msg["reason"]] = self.refused.get(msg["reason"], 0) + msg["count"]
            if len(self.notices) < KEPT_NOTICES:
                self.notices.append(msg)
            return True
        return False

    def n_sent(self):
        return sum(len(v) for v in self.expected.values()) + self.empty

    def n_expected(self):
        return sum(len(v) for v in self.expected.values())

    def n_covered(self):
        return sum(len(v) for v in self.covered.values())

    def uncovered(self, conversation=None):
        """Ids due a result and not yet covered, of one conversation or (conversation, id) of all."""
        if conversation is not None:
            return self.expected.get(conversation, set()) - self.covered.get(conversation, set())
        return {(c, u) for c, ids in self.expected.items() for u in ids - self.covered.get(c, set())}

    def in_flight(self):
        """Utterances due a result that none covered yet, less those written off."""
        return max(0, self.n_expected() - self.n_covered() - self.written_off)

    def write_off(self):
        """Stops waiting for the utterances in flight now (no result came for long): they stay
        uncovered in the report unless a result still names them."""
        self.written_off = self.n_expected() - self.n_covered()

    def n_refused(self):
        return sum(self.refused.values())

    def lines(self):
        empty = f" ({self.empty} without any modality, no result due)" if self.empty else ""
        out = [f"utterances sent: {self.n_sent()}{empty}",
               f"covered by a result: {self.n_covered()} of {self.n_expected()}"]
        refused = ", ".join(f"{k} {n}" for k, n in sorted(self.refused.items())) or "none"
        out.append(f"refused by the daemon: {refused}")
        for n in self.notices:
            where = f"{n['conversation']}" + (f" utterance {n['utterance']}" if n["utterance"] is not None else "")
            out.append(f"  notice: {n['reason']} x{n['count']}" + (f" ({where})" if where else "") + f": {n['detail']}")
        return out

    def exit_code(self):
        """0 when nothing was refused and every utterance due a result got one, else 1."""
        return 1 if self.refused or self.n_covered() < self.n_expected() else 0
