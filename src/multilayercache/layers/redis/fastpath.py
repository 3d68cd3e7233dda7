"""Reads, and batches of writes, packed by hiredis in one call, on a pooled redis-py
connection (sync and asyncio).

``client.get`` / ``client.mget`` run redis-py's generic command path, which walks every
argument in Python before packing it: about 10% of a GET and 20% of a 100-key MGET on
loopback. ``read`` / ``read_async`` pack the command with ``hiredis.pack_command`` at once
and send it on a connection taken from the client's pool, keeping redis-py's connection
contract: the connection's own retry policy, disconnect on failure, release to the pool.

``write`` / ``write_async`` do the same for a write-behind batch of commands (SETs and DELs,
or the compare-and-write script per key; a batch of plain writes to one server is a single
script call instead, ``writebatch.py``, sent by ``read``): a
redis-py pipeline of 500 SETs spends about 14 us per command in Python on this machine's
cores, packing each argument and parsing each reply; one ``pack_command`` per command, one
``sendall`` and hiredis's parser cost a fraction of that, and the batch is what keeps
write-behind above 50k writes per second.

Clients this does not fit run the command themselves: a cluster, a client bound to one
connection (``single_connection_client``), and connections that are not plain redis-py
connections (a client-side cache proxy). Tested against the oldest and newest redis-py
this package supports (``tests/layers/redis/test_fastpath.py``).
"""

from __future__ import annotations

from typing import Any

from hiredis import pack_command
from redis.asyncio.connection import AbstractConnection as AsyncAbstractConnection
from redis.connection import AbstractConnection
from redis.exceptions import ResponseError


def read(client: Any, is_cluster: bool, *args: Any) -> Any:
    """Run one command that answers once (GET, MGET, a write-behind batch's script:
    ``writebatch.py``) and return redis-py's parsed reply."""
    if is_cluster or client.connection is not None:  # set by single_connection_client
        return client.execute_command(*args)
    command = [pack_command(args)]
    pool = client.connection_pool
    connection = pool.get_connection()
    try:
        if not isinstance(connection, AbstractConnection):  # e.g. a client-side cache proxy
            return client.execute_command(*args)

        def send_and_read() -> Any:
            connection.send_packed_command(command)
            return connection.read_response()

        return connection.retry.call_with_retry(
            send_and_read, lambda _error: connection.disconnect()
        )
    finally:
        pool.release(connection)


async def read_async(client: Any, is_cluster: bool, *args: Any) -> Any:
    """The asyncio twin of ``read``."""
    if is_cluster or client.single_connection_client:
        return await client.execute_command(*args)
    command = [pack_command(args)]
    pool = client.connection_pool
    connection = await pool.get_connection()
    try:
        if not isinstance(connection, AsyncAbstractConnection):
            return await client.execute_command(*args)

        async def send_and_read() -> Any:
            await connection.send_packed_command(command)
            return await connection.read_response()

        async def drop(_error: Exception) -> None:
            await connection.disconnect()

        return await connection.retry.call_with_retry(send_and_read, drop)
    finally:
        await pool.release(connection)


def write(client: Any, is_cluster: bool, commands: list[tuple[Any, ...]]) -> None:
    """Send write commands in one round trip and read every reply; an error reply raises
    (``ResponseError``, the first one) once all replies are read, so the connection stays
    in step. A cluster, or a client bound to one connection, runs a pipeline instead."""
    if is_cluster or client.connection is not None:
        _pipeline(client, commands).execute()
        return
    packed = [b"".join([pack_command(command) for command in commands])]
    pool = client.connection_pool
    connection = pool.get_connection()
    try:
        if not isinstance(connection, AbstractConnection):
            _pipeline(client, commands).execute()
            return

        def send_and_read() -> None:
            connection.send_packed_command(packed)
            failure = None
            for _ in commands:
                try:
                    connection.read_response()
                except ResponseError as error:  # the server answered: read on
                    failure = failure or error
            if failure is not None:
                raise failure

        connection.retry.call_with_retry(send_and_read, lambda _error: connection.disconnect())
    finally:
        pool.release(connection)


async def write_async(client: Any, is_cluster: bool, commands: list[tuple[Any, ...]]) -> None:
    """The asyncio twin of ``write``."""
    if is_cluster or client.single_connection_client:
        await _pipeline(client, commands).execute()
        return
    packed = [b"".join([pack_command(command) for command in commands])]
    pool = client.connection_pool
    connection = await pool.get_connection()
    try:
        if not isinstance(connection, AsyncAbstractConnection):
            await _pipeline(client, commands).execute()
            return

        async def send_and_read() -> None:
            await connection.send_packed_command(packed)
            failure = None
            for _ in commands:
                try:
                    await connection.read_response()
                except ResponseError as error:
                    failure = failure or error
            if failure is not None:
                raise failure

        async def drop(_error: Exception) -> None:
            await connection.disconnect()

        await connection.retry.call_with_retry(send_and_read, drop)
    finally:
        await pool.release(connection)


def _pipeline(client: Any, commands: list[tuple[Any, ...]]) -> Any:
    pipeline = client.pipeline(transaction=False)
    for command in commands:
        pipeline.execute_command(*command)
    return pipeline


__all__ = ["read", "read_async", "write", "write_async"]
