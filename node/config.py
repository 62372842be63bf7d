"""The node's configuration: one TOML file, every key with a default.

Keys are checked strictly so that a typo in a hospital's `node.toml` stops the node at start-up
with the key named, instead of silently running on a default. Each section is a pydantic
dataclass with one typed field per key: its type, range and checks sit on the field, and a check
of several keys together on the section's field of `Config`.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import socket
import tomllib
from collections.abc import Callable
from dataclasses import field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field, Strict, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass
from pydantic_core import ErrorDetails

from node.errors import ConfigError
from node.input_fields import PROBLEM, checked, field_path, problem

# More serving processes than this only adds memory and database contention.
MAX_WORKERS = 64
# DICOM PS3.8 Maximum Length: 0 (no limit) or a length a PDU header can carry, of at least 4 KiB.
MIN_PDU_SIZE = 4096
MAX_PDU_SIZE = 2**32 - 1

# Every section refuses a key it does not know, so that a typo stops the node naming it.
_SECTION = ConfigDict(extra="forbid")

# TOML has types: a key is taken only with its own (no "11112" for a port, no 1 for true); a
# float key takes an integer.
Int = Annotated[int, Strict()]
Float = Annotated[float, Strict()]
Bool = Annotated[bool, Strict()]
Str = Annotated[str, Strict()]
Port = Annotated[int, Strict(), Field(ge=0, le=65535)]
RemotePort = Annotated[int, Strict(), Field(ge=1, le=65535)]
Seconds = Annotated[float, Strict(), Field(gt=0)]
Count = Annotated[int, Strict(), Field(ge=0)]
AtLeastOne = Annotated[int, Strict(), Field(ge=1)]


def _ae_title_problem(title: str) -> str | None:
    if not title or len(title) > 16 or title != title.strip() or "\\" in title:
        return "an AE title is 1 to 16 characters without spaces at either end or backslashes"
    return None


def _pdu_size_problem(size: int) -> str | None:
    if size == 0 or MIN_PDU_SIZE <= size <= MAX_PDU_SIZE:
        return None
    return f"0 (no limit) or {MIN_PDU_SIZE} to {MAX_PDU_SIZE} bytes"


def _allowed_title_problem(title: str) -> str | None:
    if title == "*" or _is_ae_title(title):
        return None
    return (f"{title!r} is neither \"*\" nor an AE title (1 to 16 printable ASCII characters, "
            "no backslash)")


def _network_problem(entry: str) -> str | None:
    try:
        ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return f"{entry!r} is not an IP address or network"
    return None


def _origin_problem(origin: str) -> str | None:
    if re.fullmatch(r"https?://[A-Za-z0-9.\-]+(:[0-9]{1,5})?", origin):
        return None
    return f"{origin!r} is not an origin (scheme://host[:port], no path, no '*')"


def _host_entry_problem(entry: str) -> str | None:
    try:
        HostEntry.parse(entry)
    except ValueError as exc:
        return str(exc)
    return None


def _instance_name_problem(name: str) -> str | None:
    if name != name.strip() or not name.isprintable() or len(name) > 64:
        return "at most 64 printable characters without spaces at either end"
    return None


def _data_dir_file_problem(name: str) -> str | None:
    if Path(name).is_absolute() or ".." in Path(name).parts:
        return "a file name inside data_dir"
    return None


AeTitle = Annotated[str, Strict(), checked(_ae_title_problem)]
AllowedTitle = Annotated[str, Strict(), checked(_allowed_title_problem)]


@dataclass(frozen=True, config=_SECTION)
class NodeSection:
    ae_title: AeTitle = "VIEWNODE"
    data_dir: Str = "data"
    # Overwrite an instance whose SOP Instance UID is already stored (default: keep the stored one).
    overwrite_duplicates: Bool = False
    # Processes serving DICOM and HTTP side by side; 0: one per CPU core this process may use.
    workers: Annotated[Count, Field(le=MAX_WORKERS)] = 0


@dataclass(frozen=True, config=_SECTION)
class DicomSection:
    bind: Str = "0.0.0.0"
    port: Port = 11112
    max_associations: AtLeastOne = 16
    maximum_pdu_size: Annotated[Int, checked(_pdu_size_problem)] = 262144
    acse_timeout: Seconds = 30.0
    dimse_timeout: Seconds = 60.0
    network_timeout: Seconds = 60.0
    # Timeout of a whole outgoing query (C-ECHO/C-FIND) to one source node.
    query_timeout: Seconds = 10.0
    # Timeout of a whole outgoing retrieval (C-MOVE/C-GET) from one source node.
    retrieve_timeout: Seconds = 600.0
    # Calling AE titles that may query and retrieve (C-FIND, C-MOVE, C-GET) besides the source
    # nodes and move destinations, which always may; ["*"]: any calling AE title.
    query_from: tuple[AllowedTitle, ...] = ()
    # Calling AE titles that may store (C-STORE) besides the source nodes (which send what the
    # node retrieves); ["*"]: any. A calling AE title allowed nothing is refused at association.
    store_from: tuple[AllowedTitle, ...] = ("*",)
    # Refuse an association whose called AE title is not node.ae_title.
    check_called_ae: Bool = False
    # The measured fast path through pynetdicom's internals (node/dimse/fastpath/); false: plain
    # pynetdicom, every promise kept by the node's own handlers (slower: about half the rate).
    fast_path: Bool = True


@dataclass(frozen=True, config=_SECTION)
class HttpSection:
    bind: Str = "0.0.0.0"
    port: Port = 8181
    max_body_bytes: AtLeastOne = 1048576
    # This instance's name, unique among instances: the X-Node-Instance response header (where a
    # proxy routed a request) and the name it claims background jobs under. Empty: host:port.
    instance_name: Annotated[Str, checked(_instance_name_problem)] = ""
    # Reverse proxies (IP addresses or networks such as "10.0.0.0/8") whose X-Forwarded-For
    # header names the client recorded in the audit, and whose X-Forwarded-Proto and
    # X-Forwarded-Host give the origin browsers use; from any other peer they are ignored.
    trusted_proxies: tuple[Annotated[Str, checked(_network_problem)], ...] = ()
    # Mark the session cookie Secure on every response, for a TLS proxy that sends no
    # X-Forwarded-Proto; otherwise it is Secure when the request came over TLS (directly, or
    # through a trusted proxy's X-Forwarded-Proto: https).
    secure_cookies: Bool = False
    # GET /metrics without the API key (for a Prometheus that cannot send it): it names no
    # patient data either way, but says how busy the node is.
    metrics_public: Bool = False


@dataclass(frozen=True, config=_SECTION)
class ApiSection:
    servlet_authorization_header: Str = ""
    token_lifetime_seconds: AtLeastOne = 300
    session_lifetime_seconds: AtLeastOne = 28800


@dataclass(frozen=True, config=_SECTION)
class DatabaseSection:
    url: Str = ""


@dataclass(frozen=True, config=_SECTION)
class StorageSection:
    # Where instances are stored: a folder (local or shared by several instances), or an
    # S3-compatible bucket (AWS, MinIO, Ceph, Wasabi, ...).
    backend: Literal["filesystem", "s3"] = "filesystem"
    # filesystem: the folder. Empty: "<data_dir>/storage".
    root: Str = ""
    # Flush each stored file and its directory to disk before answering (durability).
    fsync: Bool = True
    # s3: the bucket (it must exist), and the key prefix the node's objects go under.
    bucket: Str = ""
    prefix: Str = ""
    # s3: empty: AWS's endpoint for `region`; else e.g. "http://minio.local:9000" (path-style).
    endpoint_url: Str = ""
    region: Str = ""
    # s3: empty: credentials from the environment (AWS_ACCESS_KEY_ID, ..., or an instance
    # role); else a JSON file in data_dir (mode 0600) with access_key_id and secret_access_key.
    credentials_file: Annotated[Str, checked(_data_dir_file_problem)] = ""
    # s3: bytes of downloaded objects kept in "<data_dir>/cache" for readers (least recently
    # used evicted first; files in use stay, so the bound can be passed for a while).
    cache_max_bytes: Count = 10 * 1024**3
    # The most the stored instances may take, in bytes (as indexed), and the most studies;
    # 0: no limit. Several instances on one database share the limits.
    max_bytes: Count = 0
    max_studies: Count = 0
    # What a store that would pass a limit does: "recycle" deletes the least recently used
    # studies first (stored, opened by a token, retrieved or exported), never a protected one
    # or one a live token, session, import or retrieval needs; "reject" refuses the store
    # (C-STORE 0xA700; an import marks the study failed with "storage full").
    full_policy: Literal["recycle", "reject"] = "recycle"


@dataclass(frozen=True, config=_SECTION)
class RemoteNode:
    ae_title: AeTitle
    host: Str
    port: RemotePort
    retrieve: Literal["C-MOVE", "C-GET"] = "C-MOVE"


@dataclass(frozen=True, config=_SECTION)
class MoveDestination:
    ae_title: AeTitle
    host: Str
    port: RemotePort


@dataclass(frozen=True, config=_SECTION)
class CloudSection:
    aws_endpoint_url: Str = ""
    wasabi_endpoint_url: Str = ""
    gcs_endpoint_url: Str = ""


@dataclass(frozen=True, config=_SECTION)
class SourcesSection:
    """Fetching what the POST API names (files, buckets, WADO endpoints)."""

    # Objects fetched at once per request.
    fetch_concurrency: AtLeastOne = 8
    # Further tries after a transient failure (5xx, connection lost, timeout).
    fetch_retries: Count = 3
    # First pause before a retry; doubled each time.
    retry_backoff_seconds: Annotated[Float, Field(ge=0)] = 0.5
    # Timeout of a connection or of a read without data, per object.
    fetch_timeout: Seconds = 60.0
    # POST imports one instance runs at once (each fetching fetch_concurrency objects at once).
    imports_at_once: AtLeastOne = 4
    # The key sealing a request's cloud keys and WADO headers while its import may need them,
    # made on first use (mode 0600). Empty: "<data_dir>/credentials.key". Instances sharing one
    # database must share the key: give them the same file (on the shared data folder).
    credentials_key_file: Str = ""
    # Hosts a request's WADO URL may name although they are loopback, link-local or this
    # node's own ports: "host", "host:port" or a network ("10.9.0.0/16"). An entry without a
    # port allows every port but the node's own (name those as "host:port").
    allowed_hosts: tuple[Annotated[Str, checked(_host_entry_problem)], ...] = ()


_HOST_NAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?"
                        r"(\.[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?)*\.?$")


@dataclasses.dataclass(frozen=True)
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


@dataclass(frozen=True, config=_SECTION)
class MediaSection:
    # A viewer folder copied to every exported medium (a Weasis portable distribution, say),
    # relative to this file's folder; empty: none, and the medium's INDEX.HTM pages are the viewer.
    viewer_dir: Str = ""
    # The viewer's executable for each platform, relative to viewer_dir; a launcher is written
    # on the medium for each one that exists.
    viewer_windows: Str = "viewer-win32.exe"
    viewer_macos: Str = "viewer-mac.app"
    viewer_linux: Str = "viewer-linux.sh"
    # What each launcher passes to the viewer, one argument per item; {dicom} becomes the
    # medium's DICOM folder, {dicomdir} its DICOMDIR. The default is Weasis portable's command:
    # its launch scripts pass on only Weasis commands. A viewer taking a path: ["{dicomdir}"].
    viewer_arguments: tuple[Str, ...] = ('$dicom:get -l "{dicom}"',)
    # The largest ISO image /webdv/getIso builds, in bytes (default: a single-layer DVD);
    # larger requests are refused with 413.
    max_iso_bytes: AtLeastOne = 4_700_372_992


@dataclass(frozen=True, config=_SECTION)
class DicomwebSection:
    """The DICOMweb routes at /dicom-web."""

    # Origins of viewers served elsewhere that may call the DICOMweb routes from a browser
    # (CORS), e.g. ["https://viewer.hospital.example"]; empty: none (same origin only).
    cors_origins: tuple[Annotated[Str, checked(_origin_problem)], ...] = ()
    # The largest STOW-RS body, in bytes (http.max_body_bytes does not apply: one of declared
    # length up to 64 MiB is read whole, a larger one streamed part by part to incoming/); a
    # larger body is refused with 413.
    max_stow_bytes: AtLeastOne = 4 * 1024**3
    # How long a searching viewer session's study search (OHIF's study list) waits for the
    # source nodes' C-FIND answers; one that has not answered by then is named in a Warning
    # header and the local matches are answered without it.
    source_search_timeout: Seconds = 3.0


@dataclass(frozen=True, config=_SECTION)
class JobsSection:
    """Background jobs (retrievals, preloads), claimed through the database by one instance."""

    # How often an instance marks the jobs it runs as alive.
    heartbeat_seconds: Seconds = 5.0
    # A running job silent for this long belongs to an instance that died: another takes it over.
    stale_seconds: Seconds = 30.0
    # How often an idle instance looks for queued jobs (its own start at once).
    poll_seconds: Seconds = 1.0
    # A job taken over this many times (its instance died each time) is failed.
    max_attempts: AtLeastOne = 3


def _storage_problem(storage: StorageSection) -> tuple[str, str] | None:
    if storage.backend == "s3" and not storage.bucket:
        return "bucket", "required when storage.backend is \"s3\""
    return None


def _jobs_problem(jobs: JobsSection) -> tuple[str, str] | None:
    if jobs.heartbeat_seconds >= jobs.stale_seconds:
        return "heartbeat_seconds", "must be below jobs.stale_seconds"
    return None


def _across_keys(check: Callable[[Any], tuple[str, str] | None]) -> AfterValidator:
    """A check of a section's keys together, run when the whole configuration is read (a
    section built alone, as tests do, is taken as given)."""

    def validate(section: Any) -> Any:
        found = check(section)
        if found:
            raise problem(found[1], at=found[0])
        return section

    return AfterValidator(validate)


@dataclass(frozen=True, config=_SECTION)
class Config:
    node: NodeSection = field(default_factory=NodeSection)
    dicom: DicomSection = field(default_factory=DicomSection)
    http: HttpSection = field(default_factory=HttpSection)
    api: ApiSection = field(default_factory=ApiSection)
    database: DatabaseSection = field(default_factory=DatabaseSection)
    storage: Annotated[StorageSection, _across_keys(_storage_problem)] = field(
        default_factory=StorageSection)
    cloud: CloudSection = field(default_factory=CloudSection)
    sources: SourcesSection = field(default_factory=SourcesSection)
    media: MediaSection = field(default_factory=MediaSection)
    jobs: Annotated[JobsSection, _across_keys(_jobs_problem)] = field(
        default_factory=JobsSection)
    dicomweb: DicomwebSection = field(default_factory=DicomwebSection)
    source_nodes: tuple[RemoteNode, ...] = ()
    move_destinations: tuple[MoveDestination, ...] = ()
    # The folder the configuration file was read from: relative paths are resolved against it.
    base_dir: Path = field(default_factory=Path.cwd)

    def __post_init__(self) -> None:
        titles = [n.ae_title for n in self.source_nodes]
        if len(titles) != len(set(titles)):
            raise problem("each AE title may appear once", at="source_nodes")

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
    """The configuration from a parsed TOML document; ConfigError names the first bad key."""
    if "base_dir" in raw:
        raise ConfigError("unknown configuration section 'base_dir'")
    try:
        return _CONFIG.validate_python({**raw, "base_dir": base_dir or Path.cwd()})
    except ValidationError as exc:
        raise ConfigError(_message(exc.errors()[0])) from None


_CONFIG = TypeAdapter(Config)
# Error types of pydantic's own checks, in the words the node has always used.
_WORDS = {
    "int_type": "expected an integer", "bool_type": "expected true or false",
    "string_type": "expected a str", "float_type": "expected a float",
    "tuple_type": "expected an array", "dataclass_type": "expected a table",
}


def _message(error: ErrorDetails) -> str:
    """One validation error as `where: what is wrong`, `where` as node.toml spells it."""
    loc = error["loc"]
    where = field_path(loc, error.get("ctx"))
    kind = error["type"]
    if kind in ("unexpected_keyword_argument", "extra_forbidden"):
        if len(loc) == 1:
            return f"unknown configuration section {where!r}"
        return f"unknown configuration key {where}"
    if kind == "missing":
        return f"{field_path(loc[:-1])}: missing key {loc[-1]}"
    if kind == "tuple_type" and loc[0] in ("source_nodes", "move_destinations"):
        return f"{where}: expected an array of tables ([[{where}]])"
    if kind == "literal_error":
        expected = (error.get("ctx") or {}).get("expected", "")
        return f"{where}: must be one of {expected}"
    if kind in _WORDS:
        return f"{where}: {_WORDS[kind]}"
    if kind == PROBLEM:
        return f"{where}: {error['msg']}"
    return f"{where}: {error['msg'].replace('Input should be', 'must be')}"


def _is_ae_title(title: str) -> bool:
    return 0 < len(title) <= 16 and title == title.strip() and title.isascii() \
        and title.isprintable() and "\\" not in title
