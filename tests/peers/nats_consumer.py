"""Reads a whole JetStream stream with nats-py (a client other than the one
secmon uses) for tests/export.rs: an ephemeral pull consumer from the first
message, one JSON line per message to stdout (subject, Nats-Msg-Id, and the
payload's `event.sequence` or alert `version`).

Usage: nats_consumer.py NATS_URL STREAM"""
import asyncio
import json
import sys

import nats
from nats.js.api import ConsumerConfig, DeliverPolicy


async def main(url, stream):
    nc = await nats.connect(url)
    js = nc.jetstream()
    total = (await js.stream_info(stream)).state.messages
    sub = await js.pull_subscribe(
        "", stream=stream, config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
    )
    seen = 0
    while seen < total:
        for msg in await sub.fetch(min(500, total - seen), timeout=10):
            data = json.loads(msg.data)
            print(json.dumps({
                "subject": msg.subject,
                "id": (msg.headers or {}).get("Nats-Msg-Id"),
                "seq": data.get("event.sequence", data.get("version")),
            }))
            await msg.ack()
            seen += 1
    await nc.close()


asyncio.run(main(sys.argv[1], sys.argv[2]))
