"""PKCS#11 for every service: module loading, a session pool, error translation, key backend.

Module loading. python-pkcs11 calls ``C_Initialize(NULL)``, which tells SoftHSM (and other
modules) that the application will not call in from several threads, so they skip their own
locking and two threads signing at once crash the process. python-pkcs11 offers no way to
pass ``CK_C_INITIALIZE_ARGS``, so :func:`load_module` loads the module with ctypes first
and calls ``C_Initialize`` with ``CKF_OS_LOCKING_OK``, then hands python-pkcs11 a ``lib``
subclass whose ``initialize`` is that call (tolerating "already initialised"). If
something in the process initialised the module before us, we cannot know its flags and
fall back to serialising every session with one lock (``Pkcs11Module.os_locking`` says
which). A module is loaded once per process; a forked child must not use it.

Sessions. Login is per token, not per session, so the pool keeps one logged-in session
open for its lifetime and lends out up to ``size`` further sessions opened without a PIN.
A session that fails with a session or device error is closed and replaced; a token-level
failure (device removed, logged out) re-opens the token and logs in again.

Errors. :func:`translate_error` maps python-pkcs11 exceptions to the ServiceError tree with
fixed, safe messages; exception text (which can carry key labels) is never passed on.
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, TypeVar

import pkcs11
from asn1crypto import core as asn1_core
from asn1crypto import keys as asn1_keys
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from pkcs11 import Attribute, ObjectClass
from pkcs11 import exceptions as p11e

from signet.common.errors import (
    AlreadyExists,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ServiceError,
    Unavailable,
)
from signet.common.keys import (
    KEY_SPECS,
    HashAlgorithm,
    KeyAlgorithm,
    KeyFamily,
    SignatureScheme,
    algorithms_for_mechanisms,
    finish_signature,
    prepare_signature,
    unsupported_algorithm,
    validate_key_id,
)

_log = logging.getLogger(__name__)
T = TypeVar("T")

CKF_OS_LOCKING_OK = 0x00000002
CKR_OK = 0x00000000
CKR_CRYPTOKI_ALREADY_INITIALIZED = 0x00000191
CKR_KEY_FUNCTION_NOT_PERMITTED = 0x00000068


class _InitializeArgs(ctypes.Structure):
    """CK_C_INITIALIZE_ARGS: no mutex callbacks, OS locking allowed."""

    _fields_ = (
        ("CreateMutex", ctypes.c_void_p),
        ("DestroyMutex", ctypes.c_void_p),
        ("LockMutex", ctypes.c_void_p),
        ("UnlockMutex", ctypes.c_void_p),
        ("flags", ctypes.c_ulong),
        ("pReserved", ctypes.c_void_p),
    )


_CInitialize = ctypes.CFUNCTYPE(ctypes.c_ulong, ctypes.c_void_p)


class _FunctionListHead(ctypes.Structure):
    """The first fields of CK_FUNCTION_LIST: the version, then C_Initialize."""

    _fields_ = (
        ("major", ctypes.c_ubyte),
        ("minor", ctypes.c_ubyte),
        ("C_Initialize", _CInitialize),
    )


class Pkcs11Module:
    """One PKCS#11 module loaded into this process (see :func:`load_module`)."""

    def __init__(self, path: str, lib: Any, os_locking: bool, pid: int) -> None:
        self.path = path
        self.lib = lib
        self.os_locking = os_locking
        self.pid = pid
        # Only used when os_locking is False: then one call at a time is the safe mode.
        self.serial_lock = threading.RLock()

    def serialised(self) -> AbstractContextManager[object]:
        """A context that serialises module access when the module itself does not lock."""
        if self.os_locking:
            return nullcontext()
        return self.serial_lock

    def check_process(self) -> None:
        """Refuse use from a forked child: the module's state belongs to the parent."""
        if os.getpid() != self.pid:
            raise Internal("HSM module used after fork")


_modules: dict[str, Pkcs11Module] = {}
_modules_lock = threading.Lock()
# ctypes handles stay referenced for the life of the process so the module is never unloaded
# between our C_Initialize and python-pkcs11's own dlopen of the same file.
_dll_handles: list[ctypes.CDLL] = []


def _c_initialize_with_os_locking(path: str) -> int:
    """Call C_Initialize(CKF_OS_LOCKING_OK) through the module's function list; return CK_RV."""
    dll = ctypes.CDLL(path)
    _dll_handles.append(dll)
    get_function_list = dll.C_GetFunctionList
    get_function_list.argtypes = [ctypes.POINTER(ctypes.POINTER(_FunctionListHead))]
    get_function_list.restype = ctypes.c_ulong
    function_list = ctypes.POINTER(_FunctionListHead)()
    rv = int(get_function_list(ctypes.byref(function_list)))
    if rv != CKR_OK:
        return rv
    args = _InitializeArgs(None, None, None, None, CKF_OS_LOCKING_OK, None)
    return int(function_list.contents.C_Initialize(ctypes.addressof(args)))


def load_module(path: str) -> Pkcs11Module:
    """Load and initialise the PKCS#11 module at ``path`` once per process, with OS locking."""
    with _modules_lock:
        module = _modules.get(path)
        if module is not None:
            module.check_process()
            return module
        from pkcs11 import _pkcs11

        # python-pkcs11's own registry of loaded modules.
        previous = pkcs11._loaded.get(path)
        if previous is not None:
            # Loaded by python-pkcs11 before us, hence initialised with NULL args.
            module = Pkcs11Module(path, previous, os_locking=False, pid=os.getpid())
        else:
            state = {"os_locking": False, "done": False}

            def initialize() -> None:
                if state["done"]:
                    return
                rv = _c_initialize_with_os_locking(path)
                if rv == CKR_OK:
                    state["os_locking"] = True
                elif rv != CKR_CRYPTOKI_ALREADY_INITIALIZED:
                    raise Unavailable("HSM module could not be initialised")
                state["done"] = True

            class _OsLockingLib(_pkcs11.lib):
                def initialize(self) -> None:
                    initialize()

            try:
                lib = _OsLockingLib(path)
            except p11e.PKCS11Error:
                raise Unavailable("HSM module could not be loaded") from None
            pkcs11._loaded[path] = lib
            # The module stays loaded for the life of the process; never deallocating the
            # lib object keeps its Cython __dealloc__ from running against a half torn-down
            # subclass during interpreter shutdown.
            ctypes.pythonapi.Py_IncRef(ctypes.py_object(lib))
            module = Pkcs11Module(path, lib, bool(state["os_locking"]), os.getpid())
            if not module.os_locking:
                _log.warning("pkcs11 module initialised elsewhere; serialising HSM access")
        _modules[path] = module
        return module


# Ordered: the first matching row wins.
_TRANSLATIONS: tuple[tuple[tuple[type[Exception], ...], Callable[[], ServiceError]], ...] = (
    (
        (p11e.NoSuchKey, p11e.KeyHandleInvalid, p11e.ObjectHandleInvalid),
        lambda: NotFound("key not found"),
    ),
    (
        (p11e.AttributeSensitive, p11e.KeyUnextractable),
        lambda: PermissionDenied("key material cannot be exported"),
    ),
    (
        (
            p11e.MechanismInvalid,
            p11e.MechanismParamInvalid,
            p11e.KeyTypeInconsistent,
            p11e.KeySizeRange,
            p11e.FunctionNotSupported,
        ),
        lambda: FailedPrecondition("operation not permitted for this key"),
    ),
    (
        (p11e.TokenWriteProtected, p11e.SessionReadOnly),
        lambda: FailedPrecondition("HSM token is read-only"),
    ),
    (
        (
            p11e.DataInvalid,
            p11e.DataLenRange,
            p11e.ArgumentsBad,
            p11e.AttributeValueInvalid,
            p11e.AttributeTypeInvalid,
            p11e.TemplateIncomplete,
            p11e.TemplateInconsistent,
            p11e.DomainParamsInvalid,
        ),
        lambda: InvalidArgument("request rejected by the HSM"),
    ),
    (
        (
            p11e.PinIncorrect,
            p11e.PinInvalid,
            p11e.PinLenRange,
            p11e.PinExpired,
            p11e.PinLocked,
            p11e.UserPinNotInitialized,
        ),
        lambda: Internal("HSM login failed"),
    ),
    (
        (
            p11e.UserNotLoggedIn,
            p11e.DeviceError,
            p11e.DeviceMemory,
            p11e.DeviceRemoved,
            p11e.TokenNotPresent,
            p11e.TokenNotRecognised,
            p11e.NoSuchToken,
            p11e.SessionHandleInvalid,
            p11e.SessionClosed,
            p11e.SessionCount,
            p11e.HostMemory,
            p11e.FunctionFailed,
            p11e.GeneralError,
            p11e.FunctionCancelled,
            p11e.OperationActive,
        ),
        lambda: Unavailable("HSM unavailable"),
    ),
)

# Return values python-pkcs11 has no exception class for arrive as "Unmapped error code 0x..".
_UNMAPPED = re.compile(r"Unmapped error code (0x[0-9a-fA-F]+)")

# Errors after which the session that saw them is not reused.
_SESSION_FAULTS: tuple[type[Exception], ...] = (
    p11e.SessionHandleInvalid,
    p11e.SessionClosed,
    p11e.OperationActive,
)
# Errors after which the token is re-opened and logged in again.
_TOKEN_FAULTS: tuple[type[Exception], ...] = (
    p11e.DeviceError,
    p11e.DeviceMemory,
    p11e.DeviceRemoved,
    p11e.TokenNotPresent,
    p11e.TokenNotRecognised,
    p11e.UserNotLoggedIn,
    p11e.GeneralError,
)


def translate_error(exc: BaseException) -> ServiceError:
    """The ServiceError for a PKCS#11 failure, with a fixed client-safe message."""
    if isinstance(exc, ServiceError):
        return exc
    for kinds, make in _TRANSLATIONS:
        if isinstance(exc, kinds):
            return make()
    match = _UNMAPPED.search(str(exc)) if isinstance(exc, p11e.PKCS11Error) else None
    if match is not None and int(match.group(1), 16) == CKR_KEY_FUNCTION_NOT_PERMITTED:
        return FailedPrecondition("operation not permitted for this key")
    return Internal()


class _SessionReplaced(Unavailable):
    """The session failed and was replaced; running the operation again is sensible."""


@dataclass(frozen=True)
class _Lease:
    session: Any
    generation: int


class Pkcs11Pool:
    """Thread-safe pool of sessions on one token; one logged-in session anchors the login.

    ``with pool.session() as s:`` lends a python-pkcs11 session; PKCS#11 errors raised
    inside come out as ServiceErrors. ``pool.run(fn)`` does the same and runs ``fn`` once
    more on a fresh session when the first one broke.
    """

    def __init__(
        self,
        module_path: str,
        token_label: str,
        pin: str,
        size: int = 4,
        *,
        acquire_timeout: float = 30.0,
        slot_id: int | None = None,
    ) -> None:
        if size < 1:
            raise ValueError("pool size must be at least 1")
        self._module = load_module(module_path)
        self._label = token_label
        # Modules whose token labels are not unique (several partitions) are told the slot.
        self._slot_id = slot_id
        self._pin = pin
        self._size = size
        self._timeout = acquire_timeout
        self._cond = threading.Condition(threading.Lock())
        self._idle: list[_Lease] = []
        self._open = 0
        self._generation = 0
        self._closed = False
        self._token: Any = None
        self._login: Any = None
        self._mechanisms: frozenset[int] = frozenset()
        self._reconnect_lock = threading.Lock()
        self._connect()

    @property
    def module(self) -> Pkcs11Module:
        """The loaded module (``module.os_locking`` tells whether calls run in parallel)."""
        return self._module

    @property
    def mechanisms(self) -> frozenset[int]:
        """Mechanisms the token's slot offers (C_GetMechanismList)."""
        return self._mechanisms

    @property
    def size(self) -> int:
        """Maximum number of sessions lent out at once."""
        return self._size

    def _connect(self) -> None:
        """Find the token and open the logged-in anchor session (caller holds no pool lock)."""
        try:
            with self._module.serialised():
                token = self._find_token()
                login = self._open_login(token)
                mechanisms = frozenset(int(m) for m in token.slot.get_mechanisms())
        except p11e.PKCS11Error as exc:
            _log.error("pkcs11 token open failed", extra={"pkcs11_error": type(exc).__name__})
            raise translate_error(exc) from None
        self._token, self._login, self._mechanisms = token, login, mechanisms

    def _find_token(self) -> Any:
        """The token labelled ``token_label``, in ``slot_id`` when one was given."""
        lib = self._module.lib
        if self._slot_id is None:
            return lib.get_token(token_label=self._label)
        for slot in lib.get_slots(token_present=True):
            if slot.slot_id == self._slot_id:
                token = slot.get_token()
                if token.label == self._label:
                    return token
                break
        raise p11e.NoSuchToken("no token with that label in that slot")

    def _open_login(self, token: Any) -> Any:
        """Open the anchor session and log in (unless this process is already logged in)."""
        try:
            return token.open(user_pin=self._pin, rw=True)
        except p11e.UserAlreadyLoggedIn:
            # Another pool in this process holds the login (python-pkcs11 leaves the session
            # it opened for the failed C_Login open; one handle, only on this path). If that
            # pool logs out, our next UserNotLoggedIn re-opens this pool and logs in again.
            return token.open(rw=True)

    def _reconnect(self, failed_generation: int) -> None:
        """Re-open the token after a token-level fault, once per fault generation."""
        with self._reconnect_lock:
            with self._cond:
                if self._generation != failed_generation or self._closed:
                    return
                self._generation += 1
                stale, self._idle = self._idle, []
                self._open -= len(stale)
                self._cond.notify_all()
            for lease in stale:
                self._close_quietly(lease.session)
            if self._login is not None:
                self._close_quietly(self._login)
                self._login = None
            self._connect()

    def _close_quietly(self, session: Any) -> None:
        try:
            with self._module.serialised():
                session.close()
        except p11e.PKCS11Error as exc:
            _log.debug("pkcs11 session close failed", extra={"pkcs11_error": type(exc).__name__})

    def _acquire(self) -> _Lease:
        with self._cond:
            while True:
                if self._closed:
                    raise Unavailable("HSM session pool closed")
                if self._idle:
                    return self._idle.pop()
                if self._open < self._size:
                    self._open += 1
                    generation = self._generation
                    break
                if not self._cond.wait(timeout=self._timeout):
                    raise Unavailable("HSM busy; no session available")
        try:
            if self._login is None:
                self._reconnect(generation)
            with self._module.serialised():
                session = self._token.open(rw=True)
        except BaseException as exc:
            with self._cond:
                self._open -= 1
                self._cond.notify()
            if isinstance(exc, p11e.PKCS11Error):
                raise translate_error(exc) from None
            raise
        return _Lease(session, generation)

    def _release(self, lease: _Lease, broken: bool) -> None:
        with self._cond:
            reuse = not broken and not self._closed and lease.generation == self._generation
            if reuse:
                self._idle.append(lease)
            else:
                self._open -= 1
            self._cond.notify()
        if not reuse:
            self._close_quietly(lease.session)

    @contextmanager
    def session(self) -> Iterator[Any]:
        """Lend a session (opened without PIN; the token is logged in) for one operation."""
        self._module.check_process()
        lease = self._acquire()
        try:
            with self._module.serialised():
                yield lease.session
        except p11e.PKCS11Error as exc:
            kind = type(exc).__name__
            token_fault = isinstance(exc, _TOKEN_FAULTS)
            broken = token_fault or isinstance(exc, _SESSION_FAULTS)
            self._release(lease, broken=broken)
            if token_fault:
                _log.warning("pkcs11 token fault; re-opening", extra={"pkcs11_error": kind})
                try:
                    self._reconnect(lease.generation)
                except ServiceError:
                    _log.warning("pkcs11 re-open failed", extra={"pkcs11_error": kind})
            if broken:
                raise _SessionReplaced("HSM unavailable") from None
            _log.info("pkcs11 operation failed", extra={"pkcs11_error": kind})
            raise translate_error(exc) from None
        except BaseException:
            self._release(lease, broken=False)
            raise
        else:
            self._release(lease, broken=False)

    def run(self, operation: Callable[[Any], T], *, attempts: int = 2) -> T:
        """Run ``operation(session)``; on a broken session, run it again on a fresh one.

        Only for operations that are safe to repeat (signing, reading); not for generation.
        """
        for attempt in range(1, attempts + 1):
            try:
                with self.session() as session:
                    return operation(session)
            except _SessionReplaced:
                if attempt == attempts:
                    raise
        raise Internal()

    def close(self) -> None:
        """Close every session, the logged-in one last. Idempotent."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            idle, self._idle = self._idle, []
            self._open -= len(idle)
            self._cond.notify_all()
        for lease in idle:
            self._close_quietly(lease.session)
        if self._login is not None:
            self._close_quietly(self._login)
            self._login = None

    def __enter__(self) -> Pkcs11Pool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _mechanism(value: int) -> pkcs11.Mechanism:
    """python-pkcs11 only accepts its own Mechanism enum; vendor values cannot be passed."""
    try:
        return pkcs11.Mechanism(value)
    except ValueError:
        raise unsupported_algorithm() from None


@dataclass(frozen=True)
class _CachedKey:
    session: Any
    key: Any
    algorithm: KeyAlgorithm
    epoch: int


def _ec_params(oid: str) -> bytes:
    """CKA_EC_PARAMS for a named curve: the DER OID (the namedCurve choice)."""
    return bytes(asn1_core.ObjectIdentifier(oid).dump())


_RAW_POINT_LENGTHS = {
    KeyAlgorithm.EC_P256: 65,
    KeyAlgorithm.EC_P384: 97,
    KeyAlgorithm.ED25519: 32,
    KeyAlgorithm.SM2: 65,
}


def _unwrap_point(value: bytes, algorithm: KeyAlgorithm) -> bytes:
    """CKA_EC_POINT should be a DER OCTET STRING; some modules return the bare point."""
    if len(value) == _RAW_POINT_LENGTHS[algorithm]:
        return value
    return bytes(asn1_core.OctetString.load(value, strict=True).native)


def _public_spki(public: Any, algorithm: KeyAlgorithm) -> bytes:
    """SubjectPublicKeyInfo DER for a public key object (same bytes as the memory backend)."""
    spec = KEY_SPECS[algorithm]
    der = serialization.Encoding.DER
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if spec.family is KeyFamily.RSA:
        n = int.from_bytes(public[Attribute.MODULUS], "big")
        e = int.from_bytes(public[Attribute.PUBLIC_EXPONENT], "big")
        return rsa.RSAPublicNumbers(e, n).public_key().public_bytes(der, spki)
    point = _unwrap_point(bytes(public[Attribute.EC_POINT]), algorithm)
    if spec.family is KeyFamily.EDWARDS:
        return ed25519.Ed25519PublicKey.from_public_bytes(point).public_bytes(der, spki)
    if spec.family is KeyFamily.EC:
        curve: ec.EllipticCurve = (
            ec.SECP256R1() if algorithm is KeyAlgorithm.EC_P256 else ec.SECP384R1()
        )
        return ec.EllipticCurvePublicKey.from_encoded_point(curve, point).public_bytes(der, spki)
    info = asn1_keys.PublicKeyInfo(
        {
            "algorithm": {
                "algorithm": "ec",
                "parameters": asn1_keys.ECDomainParameters(
                    name="named", value=spec.curve_oid or ""
                ),
            },
            "public_key": point,
        }
    )
    return bytes(info.dump())


_ED25519_NAME = bytes(asn1_core.PrintableString("edwards25519").dump())


def _algorithm_of(private: Any) -> KeyAlgorithm:
    """Recognise a key's algorithm from its (non-sensitive) attributes."""
    key_type = int(private[Attribute.KEY_TYPE])
    if key_type == int(pkcs11.KeyType.RSA):
        bits = len(bytes(private[Attribute.MODULUS]).lstrip(b"\0")) * 8
        for spec in KEY_SPECS.values():
            if spec.family is KeyFamily.RSA and spec.rsa_bits == bits:
                return spec.algorithm
    elif key_type == int(pkcs11.KeyType.EC_EDWARDS):
        # RFC 8410 OID, or the curve name as a PrintableString (SoftHSM's private objects).
        params = bytes(private[Attribute.EC_PARAMS])
        if params in (_ec_params("1.3.101.112"), _ED25519_NAME):
            return KeyAlgorithm.ED25519
    else:
        params = bytes(private[Attribute.EC_PARAMS])
        for spec in KEY_SPECS.values():
            if (
                spec.key_type == key_type
                and spec.curve_oid
                and _ec_params(spec.curve_oid) == params
            ):
                return spec.algorithm
    raise FailedPrecondition("key algorithm not supported by this key store")


class Pkcs11KeyBackend:
    """:class:`signet.common.keys.KeyBackend` over a PKCS#11 token, keys generated inside.

    Private keys are token objects with PRIVATE, SENSITIVE, non-EXTRACTABLE and SIGN as
    their only capability; CKA_ID and CKA_LABEL are the key id. Found key objects are
    cached per session (a python-pkcs11 key object is bound to the session it was found
    in); any generate or destroy in this process bumps an epoch that invalidates the whole
    cache, and a stale handle (key destroyed by another process) is looked up again.
    """

    def __init__(self, pool: Pkcs11Pool, cache_size: int = 4096) -> None:
        self._pool = pool
        self._cache: OrderedDict[tuple[int, str], _CachedKey] = OrderedDict()
        self._cache_size = cache_size
        self._cache_lock = threading.Lock()
        self._epoch = 0
        self._admin_lock = threading.Lock()
        self._supported = algorithms_for_mechanisms(pool.mechanisms)

    def supported_algorithms(self) -> frozenset[KeyAlgorithm]:
        """Algorithms whose generate and sign mechanisms the token offers."""
        return self._supported

    @staticmethod
    def _find(session: Any, key_id: str, object_class: ObjectClass) -> Any:
        found = list(
            session.get_objects({Attribute.CLASS: object_class, Attribute.ID: key_id.encode()})
        )
        if not found:
            if object_class == ObjectClass.PRIVATE_KEY and list(
                session.get_objects(
                    {Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.ID: key_id.encode()}
                )
            ):
                # Private objects are invisible, not an error, when the token lost its login
                # (token reset, another logout); a public half without it means exactly that.
                raise p11e.UserNotLoggedIn()
            raise NotFound("key not found")
        if len(found) > 1:
            raise Internal("duplicate key objects")
        return found[0]

    def _invalidate(self) -> None:
        with self._cache_lock:
            self._epoch += 1
            self._cache.clear()

    def _private(self, session: Any, key_id: str) -> _CachedKey:
        slot = (int(session.handle), key_id)
        with self._cache_lock:
            epoch = self._epoch
            entry = self._cache.get(slot)
            if entry is not None and entry.session is session and entry.epoch == epoch:
                self._cache.move_to_end(slot)
                return entry
        key = self._find(session, key_id, ObjectClass.PRIVATE_KEY)
        entry = _CachedKey(session, key, _algorithm_of(key), epoch)
        with self._cache_lock:
            if entry.epoch == self._epoch:
                self._cache[slot] = entry
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return entry

    def _evict(self, session: Any, key_id: str) -> None:
        with self._cache_lock:
            self._cache.pop((int(session.handle), key_id), None)

    def generate(self, key_id: str, algorithm: KeyAlgorithm) -> bytes:
        """Generate a key pair on the token; return its public key as SPKI DER."""
        validate_key_id(key_id)
        if algorithm not in self._supported:
            raise unsupported_algorithm()
        spec = KEY_SPECS[algorithm]
        ident = key_id.encode()
        common = {Attribute.TOKEN: True, Attribute.ID: ident, Attribute.LABEL: key_id}
        public_template: dict[Attribute, Any] = {
            **common,
            Attribute.PRIVATE: False,
            Attribute.VERIFY: True,
            Attribute.ENCRYPT: False,
            Attribute.WRAP: False,
        }
        private_template: dict[Attribute, Any] = {
            **common,
            Attribute.PRIVATE: True,
            Attribute.SENSITIVE: True,
            Attribute.EXTRACTABLE: False,
            Attribute.SIGN: True,
            Attribute.DECRYPT: False,
            Attribute.UNWRAP: False,
            Attribute.DERIVE: False,
        }
        if spec.curve_oid is not None:
            public_template[Attribute.EC_PARAMS] = _ec_params(spec.curve_oid)
        with self._admin_lock, self._pool.session() as session:
            if list(session.get_objects({Attribute.ID: ident})):
                raise AlreadyExists("key already exists")
            public, _private = session.generate_keypair(
                pkcs11.KeyType(spec.key_type),
                spec.rsa_bits,
                store=True,
                capabilities=pkcs11.MechanismFlag.SIGN | pkcs11.MechanismFlag.VERIFY,
                mechanism=_mechanism(spec.generate_mechanism),
                public_template=public_template,
                private_template=private_template,
            )
            spki = _public_spki(public, algorithm)
        self._invalidate()
        return spki

    def public_key(self, key_id: str) -> bytes:
        """The public key of ``key_id`` as SPKI DER."""
        validate_key_id(key_id)

        def read(session: Any) -> bytes:
            algorithm = self._private(session, key_id).algorithm
            return _public_spki(self._find(session, key_id, ObjectClass.PUBLIC_KEY), algorithm)

        return self._pool.run(read)

    def algorithm(self, key_id: str) -> KeyAlgorithm:
        """The algorithm of an existing key."""
        validate_key_id(key_id)
        return self._pool.run(lambda session: self._private(session, key_id).algorithm)

    def sign(
        self,
        key_id: str,
        scheme: SignatureScheme,
        hash_alg: HashAlgorithm | None,
        data: bytes,
    ) -> bytes:
        """Sign inside the token (see :mod:`signet.common.keys` for the formats)."""
        validate_key_id(key_id)

        def sign_in(session: Any) -> bytes:
            for attempt in (1, 2):
                entry = self._private(session, key_id)
                request = prepare_signature(entry.algorithm, scheme, hash_alg, data)
                mechanism = request.mechanism
                try:
                    raw = entry.key.sign(
                        request.payload,
                        mechanism=_mechanism(mechanism.mechanism),
                        mechanism_param=mechanism.pss_params,
                    )
                except (p11e.KeyHandleInvalid, p11e.ObjectHandleInvalid):
                    # Destroyed (perhaps by another process) since we cached it: look again.
                    self._evict(session, key_id)
                    if attempt == 2:
                        raise
                    continue
                return finish_signature(request, bytes(raw))
            raise Internal()

        return self._pool.run(sign_in)

    def sign_many(
        self,
        key_id: str,
        scheme: SignatureScheme,
        hash_alg: HashAlgorithm | None,
        items: Sequence[bytes],
    ) -> list[bytes | ServiceError]:
        """Sign every item on one pooled session (one lease, one key lookup for the lot)."""
        validate_key_id(key_id)

        def sign_all(session: Any) -> list[bytes | ServiceError]:
            for attempt in (1, 2):
                entry = self._private(session, key_id)
                out: list[bytes | ServiceError] = []
                try:
                    for data in items:
                        try:
                            request = prepare_signature(entry.algorithm, scheme, hash_alg, data)
                        except ServiceError as err:
                            out.append(err)
                            continue
                        mechanism = request.mechanism
                        raw = entry.key.sign(
                            request.payload,
                            mechanism=_mechanism(mechanism.mechanism),
                            mechanism_param=mechanism.pss_params,
                        )
                        out.append(finish_signature(request, bytes(raw)))
                except (p11e.KeyHandleInvalid, p11e.ObjectHandleInvalid):
                    self._evict(session, key_id)
                    if attempt == 2:
                        raise
                    continue
                return out
            raise Internal()

        return self._pool.run(sign_all)

    def destroy(self, key_id: str) -> None:
        """Destroy the private and public key objects of ``key_id``."""
        validate_key_id(key_id)

        def remove(session: Any) -> None:
            self._find(session, key_id, ObjectClass.PRIVATE_KEY).destroy()
            for obj in session.get_objects({Attribute.ID: key_id.encode()}):
                obj.destroy()

        with self._admin_lock:
            try:
                self._pool.run(remove)
            finally:
                self._invalidate()

    def exists(self, key_id: str) -> bool:
        """Whether the private key ``key_id`` is on the token."""
        validate_key_id(key_id)

        def probe(session: Any) -> bool:
            try:
                self._find(session, key_id, ObjectClass.PRIVATE_KEY)
            except NotFound:
                return False
            return True

        return self._pool.run(probe)
