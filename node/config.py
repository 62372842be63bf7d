"""The node's configuration: one TOML file, every key with a default.

Keys are checked strictly so that a typo in a hospital's `node.toml` stops the node at start-up
with the key named, instead of silently running on a default.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import socket
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from node.errors import ConfigError

# More serving processes than this only adds memory and database contention.
MAX_WORKERS = 64


@dataclass(frozen=True)
class NodeSection:
    ae_title: str = "VIEWNODE"
    data_dir: str = "data"
    # Overwrite an instance whose SOP Instance UID is already stored (default: keep the stored one).
    overwrite_duplicates: bool = False
    # Processes serving DICOM and HTTP side by side; 0: one per CPU core this process may use.
    workers: int = 0


@dataclass(frozen=True)
class DicomSection:
    bind: str = "0.0.0.0"
    port: int = 11112
    max_associations: int = 16
    maximum_pdu_size: int = 262144
    acse_timeout: float = 30.0
    dimse_timeout: float = 60.0
    network_timeout: float = 60.0
    # Timeout of a whole outgoing query (C-ECHO/C-FIND) to one source node.
    query_timeout: float = 10.0
    # Timeout of a whole outgoing retrieval (C-MOVE/C-GET) from one source node.
    retrieve_timeout: float = 600.0
    # Calling AE titles that may query and retrieve (C-FIND, C-MOVE, C-GET) besides the source
    # nodes and move destinations, which always may; ["*"]: any calling AE title.
    query_from: tuple[str, ...] = ()
    # Calling AE titles that may store (C-STORE) besides the source nodes (which send what the
    # node retrieves); ["*"]: any. A calling AE title allowed nothing is refused at association.
    store_from: tuple[str, ...] = ("*",)
    # Refuse an association whose called AE title is not node.ae_title.
    check_called_ae: bool = False
    # The measured fast path through pynetdicom's internals (node/dimse/fastpath/); false: plain
    # pynetdicom, every promise kept by the node's own handlers (slower: about half the rate).
    fast_path: bool = True


@dataclass(frozen=True)
class HttpSection:
    bind: str = "0.0.0.0"
    port: int = 8181
    max_body_bytes: int = 1048576
    # This instance's name, unique among instances: the X-Node-Instance response header (where a
    # proxy routed a request) and the name it claims background jobs under. Empty: host:port.
    instance_name: str = ""
    # Reverse proxies (IP addresses or networks such as "10.0.0.0/8") whose X-Forwarded-For
    # header names the client recorded in the audit, and whose X-Forwarded-Proto and
    # X-Forwarded-Host give the origin browsers use; from any other peer they are ignored.
    trusted_proxies: tuple[str, ...] = ()
    # Mark the session cookie Secure on every response, for a TLS proxy that sends no
    # X-Forwarded-Proto; otherwise it is Secure when the request came over TLS (directly, or
    # through a trusted proxy's X-Forwarded-Proto: https).
    secure_cookies: bool = False
    # GET /metrics without the API key (for a Prometheus that cannot send it): it names no
    # patient data either way, but says how busy the node is.
    metrics_public: bool = False


@dataclass(frozen=True)
class ApiSection:
    servlet_authorization_header: str = ""
    token_lifetime_seconds: int = 300
    session_lifetime_seconds: int = 28800


@dataclass(frozen=True)
class DatabaseSection:
    url: str = ""


@dataclass(frozen=True)
class StorageSection:
    # Where instances are stored: a folder (local or shared by several instances), or an
    # S3-compatible bucket (AWS, MinIO, Ceph, Wasabi, ...).
    backend: Literal["filesystem", "s3"] = "filesystem"
    # filesystem: the folder. Empty: "<data_dir>/storage".
    root: str = ""
    # Flush each stored file and its directory to disk before answering (durability).
    fsync: bool = True
    # s3: the bucket (it must exist), and the key prefix the node's objects go under.
    bucket: str = ""
    prefix: str = ""
    # s3: empty: AWS's endpoint for `region`; else e.g. "http://minio.local:9000" (path-style).
    endpoint_url: str = ""
    region: str = ""
    # s3: empty: credentials from the environment (AWS_ACCESS_KEY_ID, ..., or an instance
    # role); else a JSON file in data_dir (mode 0600) with access_key_id and secret_access_key.
    credentials_file: str = ""
    # s3: bytes of downloaded objects kept in "<data_dir>/cache" for readers (least recently
    # used evicted first; files in use stay, so the bound can be passed for a while).
    cache_max_bytes: int = 10 * 1024**3
    # The most the stored instances may take, in bytes (as indexed), and the most studies;
    # 0: no limit. Several instances on one database share the limits.
    max_bytes: int = 0
    max_studies: int = 0
    # What a store that would pass a limit does: "recycle" deletes the least recently used
    # studies first (stored, opened by a token, retrieved or exported), never a protected one
    # or one a live token, session, import or retrieval needs; "reject" refuses the store
    # (C-STORE 0xA700; an import marks the study failed with "storage full").
    full_policy: Literal["recycle", "reject"] = "recycle"


@dataclass(frozen=True)
class RemoteNode:
    ae_title: str
    host: str
    port: int
    retrieve: Literal["C-MOVE", "C-GET"] = "C-MOVE"


@dataclass(frozen=True)
class MoveDestination:
    ae_title: str
    host: str
    port: int


@dataclass(frozen=True)
class CloudSection:
    aws_endpoint_url: str = ""
    wasabi_endpoint_url: str = ""
    gcs_endpoint_url: str = ""


@dataclass(frozen=True)
class SourcesSection:
    """Fetching what the POST API names (files, buckets, WADO endpoints)."""

    # Objects fetched at once per request.
    fetch_concurrency: int = 8
    # Further tries after a transient failure (5xx, connection lost, timeout).
    fetch_retries: int = 3
    # First pause before a retry; doubled each time.
    retry_backoff_seconds: float = 0.5
    # Timeout of a connection or of a read without data, per object.
    fetch_timeout: float = 60.0
    # POST imports one instance runs at once (each fetching fetch_concurrency objects at once).
    imports_at_once: int = 4
    # The key sealing a request's cloud keys and WADO headers while its import may need them,
    # made on first use (mode 0600). Empty: "<data_dir>/credentials.key". Instances sharing one
    # database must share the key: give them the same file (on the shared data folder).
    credentials_key_file: str = ""
    # Hosts a request's WADO URL may name although they are loopback, link-local or this
    # node's own ports: "host", "host:port" or a network ("10.9.0.0/16"). An entry without a
    # port allows every port but the node's own (name those as "host:port").
    allowed_hosts: tuple[str, ...] = ()


_HOST_NAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?"
                        r"(\.[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?)*\.?$")


@dataclass(frozen=True)
class HostEntry:
    """One `sources.allowed_hosts` entry: a host name or an address network, perhaps with a
    port. Parsed here so that a malformed entry stops the node at start, naming it."""

    name: str = ""
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    port: int | None = None

    @classmethod
    def parse(cls, entry: str) -> HostEntry:
        """ValueError with a sentence when `entry` is neither host, host:port nor a network."""
        text = entry.strip()
        try:
            return cls(network=ipaddress.ip_network(text, strict=False))
        except ValueError:
            pass
        host, port = text, None
        if text.startswith("["):  # [IPv6]:port
            host, closed, rest = text[1:].partition("]")
            if not closed or (rest and not rest.startswith(":")):
                raise ValueError(f"{entry!r} is not a host, host:port or network")
            port = _entry_port(rest[1:]) if rest else None
        elif text.count(":") == 1:
            host, _, number = text.partition(":")
            port = _entry_port(number)
        try:
            return cls(network=ipaddress.ip_network(host), port=port)
        except ValueError:
            pass
        if not _HOST_NAME.match(host):
            raise ValueError(f"{entry!r} is not a host, host:port or network")
        return cls(name=host.lower().rstrip("."), port=port)


def _entry_port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) <= 65535:
        raise ValueError(f"{text!r} is not a port (1 to 65535)")
    return int(text)



@dataclass(frozen=True)
class MediaSection:
    # A viewer folder copied to every exported medium (a Weasis portable distribution, say),
    # relative to this file's folder; empty: none, and the medium's INDEX.HTM pages are the viewer.
    viewer_dir: str = ""
    # The viewer's executable for each platform, relative to viewer_dir; a launcher is written
    # on the medium for each one that exists.
    viewer_windows: str = "viewer-win32.exe"
    viewer_macos: str = "viewer-mac.app"
    viewer_linux: str = "viewer-linux.sh"
    # What each launcher passes to the viewer, one argument per item; {dicom} becomes the
    # medium's DICOM folder, {dicomdir} its DICOMDIR. The default is Weasis portable's command:
    # its launch scripts pass on only Weasis commands. A viewer taking a path: ["{dicomdir}"].
    viewer_arguments: tuple[str, ...] = ('$dicom:get -l "{dicom}"',)
    # The largest ISO image /webdv/getIso builds, in bytes (default: a single-layer DVD);
    # larger requests are refused with 413.
    max_iso_bytes: int = 4_700_372_992


@dataclass(frozen=True)
class DicomwebSection:
    """The DICOMweb routes at /dicom-web."""

    # Origins of viewers served elsewhere that may call the DICOMweb routes from a browser
    # (CORS), e.g. ["https://viewer.hospital.example"]; empty: none (same origin only).
    cors_origins: tuple[str, ...] = ()
    # The largest STOW-RS body, in bytes: parts are streamed to incoming/ (http.max_body_bytes
    # does not apply); a larger body is refused with 413.
    max_stow_bytes: int = 4 * 1024**3


@dataclass(frozen=True)
class JobsSection:
    """Background jobs (retrievals, preloads), claimed through the database by one instance."""

    # How often an instance marks the jobs it runs as alive.
    heartbeat_seconds: float = 5.0
    # A running job silent for this long belongs to an instance that died: another takes it over.
    stale_seconds: float = 30.0
    # How often an idle instance looks for queued jobs (its own start at once).
    poll_seconds: float = 1.0
    # A job taken over this many times (its instance died each time) is failed.
    max_attempts: int = 3


@dataclass(frozen=True)
class Config:
    node: NodeSection = field(default_factory=NodeSection)
    dicom: DicomSection = field(default_factory=DicomSection)
    http: HttpSection = field(default_factory=HttpSection)
    api: ApiSection = field(default_factory=ApiSection)
    database: DatabaseSection = field(default_factory=DatabaseSection)
    storage: StorageSection = field(default_factory=StorageSection)
    cloud: CloudSection = field(default_factory=CloudSection)
    sources: SourcesSection = field(default_factory=SourcesSection)
    media: MediaSection = field(default_factory=MediaSection)
    jobs: JobsSection = field(default_factory=JobsSection)
    dicomweb: DicomwebSection = field(default_factory=DicomwebSection)
    source_nodes: tuple[RemoteNode, ...] = ()
    move_destinations: tuple[MoveDestination, ...] = ()
    # The folder the configuration file was read from: relative paths are resolved against it.
    base_dir: Path = field(default_factory=Path.cwd)

    @property
    def data_dir(self) -> Path:
        return (self.base_dir / self.node.data_dir).resolve()

    @property
    def storage_root(self) -> Path:
        if self.storage.root:
            return (self.base_dir / self.storage.root).resolve()
        return self.data_dir / "storage"

    @property
    def credentials_key_path(self) -> Path:
        if self.sources.credentials_key_file:
            return (self.base_dir / self.sources.credentials_key_file).resolve()
        return self.data_dir / "credentials.key"

    @property
    def worker_count(self) -> int:
        """How many serving processes: the configured number, or one per usable CPU core (the
        GIL lets one process use about one core)."""
        return self.node.workers or max(1, len(os.sched_getaffinity(0)))

    @property
    def instance_name(self) -> str:
        return self.http.instance_name or f"{socket.gethostname()}:{self.http.port}"

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite+aiosqlite:///{self.data_dir / 'index.sqlite'}"

    def source_node(self, ae_title: str) -> RemoteNode:
        """The configured source node with this AE title; ConfigError when there is none."""
        for remote in self.source_nodes:
            if remote.ae_title == ae_title:
                return remote
        raise ConfigError(f"unknown source node {ae_title!r}")

    def move_destination(self, ae_title: str) -> MoveDestination | None:
        for dest in self.move_destinations:
            if dest.ae_title == ae_title:
                return dest
        return None


def load_config(path: Path | str | None) -> Config:
    """Read `path` (or return the defaults when None); ConfigError names any bad key."""
    if path is None:
        return Config()
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"configuration file not found: {path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    return config_from_dict(raw, base_dir=path.resolve().parent)


def config_from_dict(raw: dict[str, Any], base_dir: Path | None = None) -> Config:
    values: dict[str, Any] = {}
    hints = typing.get_type_hints(Config)
    for key, value in raw.items():
        if key == "base_dir" or key not in hints:
            raise ConfigError(f"unknown configuration section {key!r}")
        values[key] = _convert(hints[key], value, key)
    config = Config(**values, base_dir=base_dir or Path.cwd())
    _validate(config)
    return config


def _convert(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table")
        hints = typing.get_type_hints(hint)
        known = {f.name for f in dataclasses.fields(hint)}
        kwargs = {}
        for key, item in value.items():
            if key not in known:
                raise ConfigError(f"unknown configuration key {where}.{key}")
            kwargs[key] = _convert(hints[key], item, f"{where}.{key}")
        try:
            return hint(**kwargs)
        except TypeError as exc:
            missing = [
                f.name
                for f in dataclasses.fields(hint)
                if f.name not in kwargs
                and f.default is dataclasses.MISSING
                and f.default_factory is dataclasses.MISSING
            ]
            raise ConfigError(f"{where}: missing key(s) {', '.join(missing)}") from exc
    if origin is tuple:
        (item_type, _) = typing.get_args(hint)
        if not isinstance(value, list):
            if dataclasses.is_dataclass(item_type):
                raise ConfigError(f"{where}: expected an array of tables ([[{where}]])")
            raise ConfigError(f"{where}: expected an array")
        return tuple(_convert(item_type, item, f"{where}[{i}]") for i, item in enumerate(value))
    if origin is Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            raise ConfigError(f"{where}: must be one of {', '.join(map(str, allowed))}")
        return value
    if origin in (typing.Union, types.UnionType):
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is bool and not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true or false")
    if hint is int and (not isinstance(value, int) or isinstance(value, bool)):
        raise ConfigError(f"{where}: expected an integer")
    if hint in (str, float) and not isinstance(value, hint):
        raise ConfigError(f"{where}: expected a {hint.__name__}")
    return value


def _is_ae_title(title: str) -> bool:
    return 0 < len(title) <= 16 and title == title.strip() and title.isascii() \
        and title.isprintable() and "\\" not in title


def _validate(config: Config) -> None:
    for section, ae in [("node.ae_title", config.node.ae_title)] + [
        (f"source_nodes[{i}].ae_title", n.ae_title) for i, n in enumerate(config.source_nodes)
    ] + [(f"move_destinations[{i}].ae_title", d.ae_title)
         for i, d in enumerate(config.move_destinations)]:
        if not ae or len(ae) > 16 or ae != ae.strip() or "\\" in ae:
            raise ConfigError(f"{section}: an AE title is 1 to 16 characters without spaces at "
                              "either end or backslashes")
    for key in ("query_from", "store_from"):
        for title in getattr(config.dicom, key):
            if title != "*" and not _is_ae_title(title):
                raise ConfigError(f"dicom.{key}: {title!r} is neither \"*\" nor an AE title "
                                  "(1 to 16 printable ASCII characters, no backslash)")
    for name, port in (("dicom.port", config.dicom.port), ("http.port", config.http.port)):
        if not 0 <= port <= 65535:
            raise ConfigError(f"{name}: must be between 0 and 65535")
    if not 0 <= config.node.workers <= MAX_WORKERS:
        raise ConfigError(f"node.workers: must be between 0 (one per CPU core) and {MAX_WORKERS}")
    if config.sources.fetch_concurrency < 1 or config.sources.fetch_retries < 0:
        raise ConfigError("sources: fetch_concurrency must be at least 1 and fetch_retries "
                          "at least 0")
    if config.sources.imports_at_once < 1:
        raise ConfigError("sources.imports_at_once must be at least 1")
    if config.dicomweb.max_stow_bytes < 1:
        raise ConfigError("dicomweb.max_stow_bytes must be at least 1")
    jobs = config.jobs
    if not 0 < jobs.heartbeat_seconds < jobs.stale_seconds or jobs.poll_seconds <= 0 \
            or jobs.max_attempts < 1:
        raise ConfigError("jobs: heartbeat_seconds must be above 0 and below stale_seconds, "
                          "poll_seconds above 0 and max_attempts at least 1")
    name = config.http.instance_name
    if name != name.strip() or not name.isprintable() or len(name) > 64:
        raise ConfigError("http.instance_name: at most 64 printable characters without spaces "
                          "at either end")
    for entry in config.http.trusted_proxies:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError as exc:
            raise ConfigError(f"http.trusted_proxies: {entry!r} is not an IP address or "
                              "network") from exc
    for origin in config.dicomweb.cors_origins:
        if not re.fullmatch(r"https?://[A-Za-z0-9.\-]+(:[0-9]{1,5})?", origin):
            raise ConfigError(f"dicomweb.cors_origins: {origin!r} is not an origin "
                              "(scheme://host[:port], no path, no '*')")
    for entry in config.sources.allowed_hosts:
        try:
            HostEntry.parse(entry)
        except ValueError as exc:
            raise ConfigError(f"sources.allowed_hosts: {exc}") from exc
    storage = config.storage
    if storage.backend == "s3" and not storage.bucket:
        raise ConfigError("storage.bucket: required when storage.backend is \"s3\"")
    if storage.cache_max_bytes < 0:
        raise ConfigError("storage.cache_max_bytes: must be 0 or more")
    if storage.max_bytes < 0 or storage.max_studies < 0:
        raise ConfigError("storage.max_bytes and storage.max_studies: 0 (no limit) or more")
    if Path(storage.credentials_file).is_absolute() or ".." in Path(
            storage.credentials_file).parts:
        raise ConfigError("storage.credentials_file: a file name inside data_dir")
    titles = [n.ae_title for n in config.source_nodes]
    if len(titles) != len(set(titles)):
        raise ConfigError("source_nodes: each AE title may appear once")
