"""Where a sweep's trials run: a Dask ``distributed.Client`` to a local or remote cluster.

``connect`` returns a client to a new ``LocalCluster`` of single-threaded worker processes
(one BLAS and one Numba thread each), or to a running scheduler at ``tcp://HOST:PORT``
(``dask scheduler`` and ``dask worker``) that must answer within a timeout, else
``SchedulerError``; ``workers_of`` lists the scheduler's workers. Dask is an optional
dependency (``pip install "fastopt[dist]"``): without it, ``MissingDaskError`` names the pip
command. Nothing here imports dask at module level.
"""

import os
import socket
import time

DEFAULT_CONNECT_TIMEOUT = 5.0


class MissingDaskError(ImportError):
    """dask.distributed is not installed; the message names the pip command."""


class SchedulerError(ConnectionError):
    """The Dask scheduler at the given address cannot be reached."""


def import_distributed():
    """The ``distributed`` module, or MissingDaskError naming the extra to install."""
    try:
        import distributed
    except ImportError as exc:
        raise MissingDaskError(
            "sweeps run on Dask distributed, which is not installed; install it with\n"
            '    pip install "fastopt[dist]"\n'
            "(or run the trials in this process, one after the other, with workers=0 / "
            "--workers 0)") from exc
    return distributed


def connect(scheduler=None, workers=None, timeout=DEFAULT_CONNECT_TIMEOUT):
    """A ``distributed.Client``: to the scheduler at ``scheduler`` (within ``timeout``
    seconds, else SchedulerError), or to a new LocalCluster of ``workers`` processes (default
    one per core) with one thread, one BLAS thread and one Numba thread each. Returns
    (client, cluster or None)."""
    distributed = import_distributed()
    if scheduler is not None:
        try:
            _probe(scheduler, timeout)
            client = distributed.Client(scheduler, timeout=timeout, set_as_default=False)
        except Exception as exc:  # noqa: BLE001 - whatever it was, there is no scheduler
            why = str(exc).splitlines()[0] if str(exc) else ""
            raise SchedulerError(
                f"cannot reach the Dask scheduler at {scheduler} within {timeout:g} s "
                f"({type(exc).__name__}: {why}); check that `dask scheduler` runs there and "
                "the address (tcp://HOST:PORT, port 8786 by default) and firewall are right, "
                "or leave out --scheduler to use a local cluster") from None
        return client, None
    import logging

    n = workers or os.cpu_count() or 1
    one = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "NUMBA_NUM_THREADS": "1"}
    cluster = distributed.LocalCluster(
        n_workers=n, threads_per_worker=1, processes=True,
        # no dashboard; the scheduler's HTTP endpoints on any free port (not 8787, which
        # another cluster may hold)
        dashboard_address=":0", scheduler_kwargs={"dashboard": False},
        silence_logs=logging.CRITICAL, env=one)  # the sweep reports lost workers itself
    try:
        client = distributed.Client(cluster, set_as_default=False)
    except BaseException:
        cluster.close()
        raise
    return client, cluster


def workers_of(client):
    """The scheduler's workers: {address: info} (all of them; newer distributed versions
    list only the first few unless asked)."""
    try:
        info = client.scheduler_info(n_workers=-1)
    except TypeError:  # distributed before 2025: no n_workers, always all of them
        info = client.scheduler_info()
    return info["workers"]


def _probe(address, timeout):
    """Check that a Dask server answers at a tcp:// address within ``timeout`` seconds.

    ``distributed.Client(address, timeout=...)`` bounds the TCP connection but not the
    handshake that follows (distributed 2026.8): a port where something accepts connections
    and says nothing (a proxy, another service) makes it wait forever, and one that answers
    in another protocol makes it allocate whatever its first bytes say. A Dask server speaks
    first: its handshake starts with an 8-byte little-endian frame length. Other schemes
    (tls://, ucx://) are left to distributed."""
    import struct

    from distributed.comm.addressing import parse_address, parse_host_port

    scheme, location = parse_address(address)
    if scheme != "tcp":
        return
    host, port = parse_host_port(location)
    deadline = time.monotonic() + timeout
    while True:  # a scheduler that is starting refuses connections: retry until the deadline
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
            break
        except ConnectionRefusedError:
            if time.monotonic() + 0.2 > deadline:
                raise
            time.sleep(0.2)
    with sock:
        head = b""
        while len(head) < 8:
            sock.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                chunk = sock.recv(8 - len(head))
            except TimeoutError:
                raise TimeoutError(f"something accepted the connection but sent no Dask "
                                   f"handshake in {timeout:g} s") from None
            if not chunk:
                raise ConnectionError("the connection was closed before a Dask handshake")
            head += chunk
    (length,) = struct.unpack("<Q", head)
    if not 0 < length < 2**24:
        raise ConnectionError(f"the server there does not speak Dask's protocol (its first "
                              f"bytes are {head!r})")
