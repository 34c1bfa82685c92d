"""Benchmark traffic: realistic note frames, pre-encoded as WebSocket wire bytes.

The templates in ``notes.jsonl`` are real note frames copied from a Misskey server's recording
(``tests/fixtures/frames.jsonl``): plain, long Japanese with emoji, files, reply, quote,
pure renote, poll, CW, MFM, mentions and hashtags. Each generated frame takes one template and
gets a fresh note id, ``createdAt`` and mostly Japanese text sized so that a frame averages
about 1.5 KB, like a busy local timeline. Everything here is pure and deterministic (seeded).
"""

from __future__ import annotations

import json
import random
import struct
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "notes.jsonl"

OPCODE_TEXT = 0x1
OPCODE_CLOSE = 0x8
OPCODE_PING = 0x9
OPCODE_PONG = 0xA

SENT_AT_KEY = "_benchSentNs"
SENT_AT_WIDTH = 20  # zero-padded monotonic nanoseconds, patched into the wire bytes at send time
SENT_AT_PLACEHOLDER = "0" * SENT_AT_WIDTH

SENTENCES = (
    "今日はとても良い天気ですね☀️",
    "Misskeyのストリーミングを眺めながらお茶を飲んでいます🍵",
    "吾輩は猫である。名前はまだ無い。",
    "どこで生れたかとんと見当がつかぬ。",
    "新しいリアクション絵文字を追加しました :blobcat: ",
    "駅前のラーメン屋さん、行列がすごかった🍜",
    "週末は京都で紅葉狩りの予定です🍁",
    "「かぎかっこ」『二重かぎかっこ』【すみつき】も表示できるかな？",
    "#misskey #テスト 今日のタイムラインは平和です。",
    "ｶﾀｶﾅ半角とＡＢＣ全角が混ざった文章。",
    "サーバーのアップデートが終わりました。お疲れさまでした🎉",
    "@alice さん、こんにちは！",
    "電車が遅れていて会議に間に合わなさそう😇",
    "このノートはベンチマーク用に生成されたものです。",
    "𠮷野家の牛丼は安定のおいしさ。",
    "改行も入れます。\n\n空行のあとの段落。",
    "夜空に星がきれいに見えます🌌",
    "猫が膝の上で寝てしまって動けない😺",
    "明日の天気予報は雨のち晴れ☂️",
    "ストリーミングAPIのテスト中 🌱",
    "新しいキーボードを買いました⌨️ 打鍵感が最高です。",
    "お昼ごはんはカレーにしました🍛",
)

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def load_templates() -> list[dict[str, Any]]:
    return [json.loads(line) for line in TEMPLATES.read_text(encoding="utf-8").splitlines() if line.strip()]


def encode_frame(frame: dict[str, Any]) -> bytes:
    """Compact JSON with non-ASCII kept as is, as Misskey (JavaScript's JSON.stringify) sends it."""
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def wire(payload: bytes, opcode: int = OPCODE_TEXT) -> bytes:
    """One final, unmasked (server to client) WebSocket frame."""
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x80 | opcode, size)
    elif size < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 126, size)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 127, size)
    return header + payload


def _aid(rng: random.Random) -> str:
    return "".join(rng.choice(_ALPHABET) for _ in range(16))


def _text(rng: random.Random, budget: int) -> str:
    parts: list[str] = []
    used = 0
    while used < budget:
        sentence = rng.choice(SENTENCES)
        parts.append(sentence)
        used += len(sentence.encode("utf-8"))
    return "".join(parts)


def note_frames(count: int, connection_id: str, seed: int = 20261127, mean_bytes: int = 1500,
                sent_at: bool = False) -> list[bytes]:
    """``count`` channel frames carrying notes, as JSON payloads (not yet wire-framed).

    Each frame's size is drawn from 0.4..1.2 x ``mean_bytes`` and filled with Japanese text; a
    template already larger than its draw (a reply or renote with its nested note) keeps a short
    text, which lifts the average back to about ``mean_bytes`` (run.py reports the measured mean).
    """
    rng = random.Random(seed)
    templates = load_templates()
    # Replies and renotes carry a whole second note: rarer than plain notes on a real timeline.
    weights = [1 if "reply" in t["body"]["body"] or "renote" in t["body"]["body"] else 3 for t in templates]
    frames: list[bytes] = []
    for template in rng.choices(templates, weights, k=count):
        note = json.loads(json.dumps(template["body"]["body"]))
        note["id"] = _aid(rng)
        note["createdAt"] = f"2026-11-27T{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}." \
                            f"{rng.randrange(1000):03d}Z"
        if sent_at:
            note[SENT_AT_KEY] = SENT_AT_PLACEHOLDER
        frame = {"type": "channel", "body": {"id": connection_id, "type": "note", "body": note}}
        if note.get("text") is not None:
            note["text"] = ""
            base = len(encode_frame(frame))
            target = int(mean_bytes * rng.uniform(0.4, 1.2))
            note["text"] = _text(rng, max(30, target - base))
        frames.append(encode_frame(frame))
    return frames


def connected_frame(connection_id: str) -> bytes:
    return encode_frame({"type": "connected", "body": {"id": connection_id}})


def close_payload(code: int = 1000) -> bytes:
    return struct.pack("!H", code)
