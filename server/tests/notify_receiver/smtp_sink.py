#!/usr/bin/env python3
"""A real SMTP server for Cove's email notification tests (server/tests/notify_email.rs).

Usage: smtp_sink.py PORT DIR. aiosmtpd (Debian's python3-aiosmtpd) listens on 127.0.0.1:PORT;
every message it accepts is parsed with the standard library's email package and written to
DIR/NNNNN.json (written to a temporary name, then renamed): envelope sender and recipients,
the decoded Subject, the header names, the plain-text body and the raw message. Prints
"ready PORT" once it accepts connections and runs until it is killed or stdin closes.
"""
import email
import email.policy
import json
import os
import sys
import threading

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, out):
        self.out = out
        self.count = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        part = msg.get_body(preferencelist=("plain",))
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "subject": str(msg["subject"] or ""),
            "to": str(msg["to"] or ""),
            "from": str(msg["from"] or ""),
            "headers": [k.lower() for k in msg.keys()],
            "text": part.get_content().replace("\r\n", "\n") if part is not None else "",
            "raw": raw.decode("utf-8", "replace"),
        }
        with self.lock:
            self.count += 1
            path = os.path.join(self.out, "%05d.json" % self.count)
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(record, f)
        os.rename(path + ".tmp", path)
        return "250 2.0.0 Message accepted"


def main():
    port, out = int(sys.argv[1]), sys.argv[2]
    os.makedirs(out, exist_ok=True)
    controller = Controller(Sink(out), hostname="127.0.0.1", port=port)
    controller.start()
    print("ready %d" % port, flush=True)
    try:
        sys.stdin.read()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
