"""The simulator's raw material: aidx ids and timestamps, the cast of users, the texts they post.

Data and small pure functions shared by the content generator (``traffic``) and the HTTP API: how
Misskey makes ids (``aidx``) and writes times, the simulated accounts and remote users with their
``UserLite`` shape, the multilingual corpus notes are drawn from, the custom emojis, the server's
key order for note objects, and the tag and mention rules.
"""

from __future__ import annotations

import hashlib
import random
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

# ---------------------------------------------------------------------------------------------
# Ids and timestamps

AIDX_EPOCH_MS = 946684800000  # 2000-01-01T00:00:00Z, the origin of Misskey's aid/aidx ids
_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"
_COUNTER_SPAN = 36 ** 4


def base36(value: int, width: int) -> str:
    digits = []
    for _ in range(width):
        value, digit = divmod(value, 36)
        digits.append(_B36[digit])
    return "".join(reversed(digits))


def aidx(ms: int, node: str, counter: int) -> str:
    """A 16-character aidx id: 8 chars of time since 2000, 4 of node, 4 of counter."""
    return base36(max(ms - AIDX_EPOCH_MS, 0), 8) + node + base36(counter % _COUNTER_SPAN, 4)


def aidx_ms(note_id: str) -> int:
    """The epoch milliseconds an aidx id was made at."""
    return int(note_id[:8], 36) + AIDX_EPOCH_MS


def iso(ms: int) -> str:
    """ISO 8601 UTC with milliseconds, as Misskey writes ``createdAt``."""
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


class IdGenerator:
    """Monotonic aidx ids for things made now, and plausible ids for things made earlier."""

    def __init__(self, rng: random.Random, clock: Callable[[], float]) -> None:
        self._rng = rng
        self._clock = clock
        self.node = "".join(rng.choice(_B36) for _ in range(4))
        self._last_ms = 0
        self._counter = 0

    def now_ms(self) -> int:
        return int(self._clock() * 1000)

    def next(self) -> tuple[str, int]:
        """A new id and its time; ids sort in the order they were made, like the real ones."""
        ms = max(self.now_ms(), self._last_ms)
        if ms == self._last_ms:
            self._counter += 1
            if self._counter >= _COUNTER_SPAN:
                ms += 1
                self._counter = 0
        else:
            self._counter = 0
        self._last_ms = ms
        return aidx(ms, self.node, self._counter), ms

    def at(self, ms: int) -> str:
        return aidx(ms, self.node, self._rng.randrange(_COUNTER_SPAN))


def stable_id(seed_text: str, ms: int) -> str:
    """A fixed aidx id for a fixed thing (a user, a role): the same in every run."""
    digest = hashlib.sha256(seed_text.encode()).digest()
    node = "".join(_B36[b % 36] for b in digest[:4])
    counter = int.from_bytes(digest[4:8], "big")
    return aidx(ms, node, counter)


# ---------------------------------------------------------------------------------------------
# Users

@dataclass(frozen=True)
class Instance:
    host: str
    name: str
    software: str
    version: str
    theme_color: str


INSTANCES = {
    "misskey.example.jp": Instance("misskey.example.jp", "みすきーのさーばー", "misskey", "2025.10.2", "#86b300"),
    "mastodon.example.social": Instance("mastodon.example.social", "Example Social", "mastodon", "4.4.3", "#6364ff"),
    "sharkey.example.net": Instance("sharkey.example.net", "Sharkey Example", "sharkey", "2025.4.3", "#9bbd3e"),
    "pleroma.example.org": Instance("pleroma.example.org", "Pleroma Example", "pleroma", "2.7.0", "#1ca4e2"),
}


@dataclass(frozen=True)
class User:
    id: str
    username: str
    name: str | None
    host: str | None = None
    is_bot: bool = False
    is_cat: bool = False
    followed: bool = True  # followed by every simulated account (drives homeTimeline)
    avatar_blurhash: str | None = None
    badge_roles: tuple[tuple[str, str], ...] = ()  # (name, icon path)
    online_status: str = "online"

    @property
    def acct(self) -> str:
        return self.username if self.host is None else f"{self.username}@{self.host}"

    def lite(self, base_url: str) -> dict[str, Any]:
        """The ``UserLite`` object embedded in notes and notifications."""
        host_port = base_url.split("://", 1)[-1]
        if self.host is None:
            avatar = f"{base_url}/identicon/{self.username}@{host_port}"
        else:
            remote = f"https://{self.host}/files/avatar-{self.username}.webp"
            avatar = f"{base_url}/proxy/avatar.webp?url={quote(remote, safe='')}&avatar=1"
        lite: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "username": self.username,
            "host": self.host,
            "avatarUrl": avatar,
            "avatarBlurhash": self.avatar_blurhash,
            "avatarDecorations": [],
            "isBot": self.is_bot,
            "isCat": self.is_cat,
        }
        if self.host is not None:
            inst = INSTANCES.get(self.host)
            if inst is not None:
                lite["instance"] = {
                    "name": inst.name,
                    "softwareName": inst.software,
                    "softwareVersion": inst.version,
                    "iconUrl": f"https://{inst.host}/static-assets/icons/192.png",
                    "faviconUrl": f"https://{inst.host}/favicon.ico",
                    "themeColor": inst.theme_color,
                }
        lite["emojis"] = {}
        lite["onlineStatus"] = "unknown" if self.host is not None else self.online_status
        lite["badgeRoles"] = [
            {"name": name, "iconUrl": f"{base_url}{icon}", "displayOrder": 0} for name, icon in self.badge_roles
        ]
        return lite


_USER_EPOCH = 1_700_000_000_000  # late 2023: when the simulated accounts "signed up"


def make_user(username: str, name: str | None, host: str | None = None, **flags: Any) -> User:
    digest = hashlib.sha256(f"{username}@{host}".encode()).digest()
    created = _USER_EPOCH + int.from_bytes(digest[:4], "big") % (400 * 86_400_000)
    return User(stable_id(f"user:{username}@{host}", created), username, name, host, **flags)


_BLURHASH = "e0BMQ3?JkC?Jof?JN4WFN5WFofWFa#WFa#?JN5WFN5WFofWFa#WFa#"

# Accounts with tokens get these profiles (looked up by username; others get a plain profile).
KNOWN_ACCOUNTS: dict[str, dict[str, Any]] = {
    "alice": {"name": "アリス Alice :blobcat:", "badge_roles": (("explorer", "/static-assets/badges/info.png"),)},
    "bob": {"name": "ボブ Bob 🐈", "is_bot": True, "is_cat": True, "avatar_blurhash": _BLURHASH},
    "admin": {"name": None},
    "demo": {"name": "デモ Demo 🧪"},
}

_BADGE = (("ねこ部", "/static-assets/badges/info.png"),)
_BLURHASHES = (
    "eKO2?U%2Tw=w]~RBVZRi};RPxuwH%3s8tLOtxZ%gixI.ENa0NZIVt6",
    "e9Cj3f.8~q9F%MofM{WBt7t7~qxut7WBj[M{j[ayofj[%MRjRjfQt7",
    "eRKd]aM{00?b~q%M%MM{M{WB-;WBRjt7M{~qt7RjRjIUt7t7j[ofWB",
    _BLURHASH,
)

CAST: tuple[User, ...] = (
    make_user("mikan", "みかん🍊", is_cat=True, avatar_blurhash=_BLURHASHES[0], badge_roles=_BADGE),
    make_user("sora", "そら", online_status="active", avatar_blurhash=_BLURHASHES[1]),
    make_user("kuma", "くまさん :blobcat:", followed=False, avatar_blurhash=_BLURHASHES[2]),
    make_user("hanako", "花子 🌸", avatar_blurhash=_BLURHASHES[3], badge_roles=_BADGE),
    make_user("taro", "太郎 🍣", followed=False, online_status="offline"),
    make_user("emma", "Emma", avatar_blurhash=_BLURHASHES[1]),
    make_user("noah", "Noah ☕", followed=False, avatar_blurhash=_BLURHASHES[2]),
    make_user("weatherbot", "お天気ボット ☀️", is_bot=True, avatar_blurhash=_BLURHASHES[0]),
    make_user("yuki", "ゆき❄️", is_cat=True, followed=False, avatar_blurhash=_BLURHASHES[3]),
    make_user("nekomimi", "ねこみみ", "misskey.example.jp", is_cat=True, avatar_blurhash=_BLURHASHES[0]),
    make_user("alex", "Alex", "mastodon.example.social", avatar_blurhash=_BLURHASHES[2]),
    make_user("riko", "りこ", "sharkey.example.net", followed=False, avatar_blurhash=_BLURHASHES[1]),
    make_user("sam", "Sam 🌈", "pleroma.example.org", followed=False),
    make_user("technews", "Tech News", "mastodon.example.social", is_bot=True, followed=False,
              avatar_blurhash=_BLURHASHES[3]),
)


# ---------------------------------------------------------------------------------------------
# Text corpus

JAPANESE = (
    "おはようございます☀️ 今日もいちにち頑張りましょう",
    "お昼はラーメンにしました🍜 とんこつ最高",
    "ねこがキーボードの上で寝ている…どうしよう🐈",
    "新しいテーマ作ってみた！ダークモードで目に優しい感じ🌙",
    "今日はとても良い天気ですね☀️🌸 散歩してきます",
    "電車が遅延してて草",
    "コーヒー3杯目☕☕☕ まだ眠い",
    "週末は京都に行ってきました⛩️ 紅葉がきれいだった🍁",
    "吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。",
    "雨の日はおうちでゲーム🎮",
    "やっとビルド通った……🎉 CIさんありがとう",
    "きょうの晩ごはん: カレー🍛 あしたもカレー",
    "ストリーミングAPIのテスト中です。ちゃんと届いてるかな？👀",
    "寒くなってきたので鍋の季節ですね🍲",
    "ぷりん食べたい🍮",
    "締め切り前の謎の掃除欲",
    "初めての投稿です！よろしくお願いします🙇",
    "ｶﾀｶﾅ半角と全角ＡＢＣのテスト ①②③ 𠮷野家",
    "今夜は流れ星が見えるらしい🌠 みんなで見よう",
    "桜が咲き始めました🌸 もうすぐ春ですね",
)

ENGLISH = (
    "Good morning, fediverse! ☀️",
    "Just shipped a new release. Changelog in the thread 🚀",
    "Anyone else's cat sitting on the keyboard right now? 🐈",
    "Coffee first, code later ☕",
    "The build is green for the first time this week 🎉",
    "Reading about WebSocket keepalives. Ping frames are underrated.",
    "It's raining again. Perfect weather for refactoring.",
    "Hot take: tabs for indentation, spaces for alignment.",
    "Trying out a new keyboard layout, typing is slow but fun ⌨️",
    "Today I learned that Misskey ids are base36 timestamps.",
    "Lunch: homemade ramen 🍜 turned out surprisingly good",
    "Weekend plans: hiking, then absolutely nothing 🏔️",
    "Does anyone have a good recipe for pudding? 🍮",
    "Finally fixed that flaky test. It was a race condition, of course.",
    "Sunset from the office window today 🌇",
)

MIXED = (
    "今日のTIL: jq の --arg が便利すぎる 🛠️",
    "Misskeyのストリーミングを見てる。notes are flowing 🌊",
    "ランチは sushi 🍣 at the new place near the station",
    "Working from cafe today ☕ 作業がはかどる",
    "@{mention} さん、こんにちは！ Nice to meet you 👋",
)

MFM = (
    "**太字** と <i>italic</i> と ~~取り消し~~ と `code` のテスト",
    "$[tada 🎉 リリースしました 🎉]",
    "$[x2 でかい] $[spin くるくる] $[shake ぶるぶる]",
    "<center>中央寄せ ✨</center>\n> 引用もできる",
    "```python\nprint('こんにちは、Misskey')\n```\nコードブロックも使えます",
    "$[rainbow にじいろ🌈] $[sparkle きらきら]",
    "[リンク](https://misskey-hub.net/) <plain>**not bold**</plain> :blobcat:",
)

CW_PAIRS = (
    ("ネタバレ注意 ⚠️ spoiler", "最終回、まさかの展開でした…😭"),
    ("飯テロ 🍖", "深夜のラーメン🍜 背徳の味"),
    ("long post", "I wrote a long thread about streaming APIs. TL;DR: answer your pings."),
    ("愚痴", "月曜日がまた来る"),
)

HASHTAGS = ("misskey", "fediverse", "python", "ねこ", "今日のごはん", "photography", "テスト", "music")

POLLS = (
    ("好きな食べ物は？ 🍽️", ("🍣 すし", "🍜 ラーメン", "🍛 カレー")),
    ("Tabs or spaces?", ("tabs", "spaces")),
    ("朝型？夜型？", ("朝 🌅", "夜 🌙", "どっちでもない")),
    ("Best editor?", ("vim", "emacs", "VS Code", "nano")),
    ("犬派？猫派？", ("🐕 犬", "🐈 猫")),
)

REPLIES = (
    "わかる〜", "それな", "すごい！👏", "おつかれさまです🍵", "Nice! 🎉", "I agree 👍",
    "草", "かわいい🥰", "Congrats! 🎊", "ありがとうございます🙏", "Same here 😅",
)

QUOTES = ("これは良い", "Worth reading 👀", "なるほど🤔", "みんな見て", "lol this")

FILE_COMMENTS = ("代替テキスト / alt text 🖼️", "ねこの写真", "夕焼け", None, None, "screenshot of the build log")

ACHIEVEMENTS = ("notes1", "login3", "iLoveMisskey", "followers10", "client30min", "markedAsCat")

UNICODE_REACTIONS = ("👍", "❤", "😆", "🎉", "🤔", "😮", "🙏", "🍮", "✨", "👀")
LOCAL_CUSTOM_EMOJIS = ("blobcat", "blobcatheart", "kawaii", "igyo")
REMOTE_CUSTOM_EMOJIS = (("ablobcatnod", "misskey.example.jp"), ("neko_thinking", "sharkey.example.net"))

_TAG_RE = re.compile(r"#([^\s#.,!?、。！？「」『』()（）\[\]{}<>'\"]+)")
MENTION_RE = re.compile(r"@([A-Za-z0-9_]+)(?:@([A-Za-z0-9.-]+))?")

NOTE_KEYS = (
    "id", "createdAt", "userId", "user", "text", "cw", "visibility", "localOnly", "reactionAcceptance",
    "visibleUserIds", "renoteCount", "repliesCount", "reactionCount", "reactions", "reactionEmojis",
    "reactionAndUserPairCache", "emojis", "tags", "fileIds", "files", "replyId", "renoteId", "channelId",
    "channel", "mentions", "hasPoll", "uri", "url", "clippedCount", "reply", "renote", "poll", "myReaction",
)
_KEY_RANK = {key: rank for rank, key in enumerate(NOTE_KEYS)}

NOTE_KINDS = (
    "plain", "cw", "mfm", "hashtags", "mention", "reply", "self_reply", "pure_renote", "quote", "files",
    "file_only", "poll", "long",
)
KIND_WEIGHTS = (30, 4, 5, 7, 4, 6, 5, 10, 4, 7, 2, 5, 2)
# The opening notes of a run are ordinary notes with text, so `-n 3 | jq .body.body.text` shows text.
ORDINARY_KINDS = ("plain", "hashtags", "mention", "mfm", "poll")
ORDINARY_OPENING = 5


def normalize_tag(tag: str) -> str:
    """Misskey's normalizeForSearch: NFKC, lower case."""
    return unicodedata.normalize("NFKC", tag).lower()


def extract_tags(text: str | None) -> list[str]:
    found: list[str] = []
    for match in _TAG_RE.finditer(text or ""):
        tag = normalize_tag(match.group(1))
        if tag not in found:
            found.append(tag)
    return found


def order_note(note: dict[str, Any]) -> dict[str, Any]:
    """The note with its keys in the server's order (unknown keys last, in their order)."""
    return dict(sorted(note.items(), key=lambda item: _KEY_RANK.get(item[0], len(NOTE_KEYS))))


def strip_pair_cache(note: dict[str, Any]) -> dict[str, Any]:
    """The note as notifications, mentions and antennas carry it: no reactionAndUserPairCache."""
    out = {k: v for k, v in note.items() if k != "reactionAndUserPairCache"}
    for key in ("reply", "renote"):
        if isinstance(out.get(key), dict):
            out[key] = strip_pair_cache(out[key])
    return out
