"""House-custodied wallets: provisioning (key into the keystore, address into the database) and
on-chain deposits credited to the ledger so that ledger balance = chain balance."""

from __future__ import annotations

from decimal import Decimal

from django.db import transaction

from common.actors import Actor, stamp_history
from common.choices import Chain
from common.exceptions import ValidationFailed
from ledger.models import Journal
from ledger.services.ledger import ledger_deposit
from rails.crypto.registry import chain_rail_of
from rails.crypto.signing import keystore, new_private_key
from reference.models import Asset, Participant, WalletAddress


def wallet_provision(*, participant: Participant, chain: str, actor: Actor) -> WalletAddress:
    """The participant's wallet on ``chain``; a new key is generated into the keystore if the
    participant has none. Idempotent."""
    existing = WalletAddress.objects.filter(participant=participant, chain=chain).first()
    if existing is not None:
        return existing
    if chain not in Chain.values:
        raise ValidationFailed(f"key generation for {chain} wallets is not supported")
    address = keystore().add(new_private_key(chain), chain)
    wallet = WalletAddress(participant=participant, chain=chain, address=address, label="house custody")
    stamp_history(wallet, actor=actor, reason="wallet provisioned")
    wallet.save()
    return wallet


def wallet_nonce_give_back(*, chain: str, address: str, nonce: int, state_before: dict) -> None:
    """A transaction that never reached the chain gives its nonce (and the wallet state it spent
    from) back, when it was the wallet's last one; otherwise later transactions wait on the gap."""
    WalletAddress.objects.filter(chain=chain, address=address, next_nonce=nonce + 1).update(
        next_nonce=nonce, chain_state=state_before
    )


def wallet_nonce_taken(*, chain: str, address: str, sender_nonce: int) -> None:
    """Another transaction used our nonce (double spend): the next signature starts from the
    chain's next nonce, and on UTXO chains from what the node lists as unspent (the change our
    next transaction would have spent is gone with ours)."""
    WalletAddress.objects.filter(chain=chain, address=address, next_nonce__lt=sender_nonce).update(
        next_nonce=sender_nonce
    )
    WalletAddress.objects.filter(chain=chain, address=address).update(chain_state={})


def chain_deposit_credit(
    *, wallet: WalletAddress, asset: Asset, amount: Decimal, tx_hash: str, actor: Actor
) -> Journal:
    """Credit the ledger for value that arrived in a house wallet on chain (idempotent by tx)."""
    if asset.chain != wallet.chain:
        raise ValidationFailed(f"{asset.code} does not live on {wallet.chain}")
    with transaction.atomic():
        return ledger_deposit(
            owner=wallet.participant,
            asset=asset,
            amount=amount,
            reference=f"chain-deposit:{tx_hash}",
            actor=actor,
            memo=f"on-chain deposit {tx_hash} to {wallet.address}",
        )


def local_chain_fund(*, wallet: WalletAddress, asset: Asset, amount: Decimal, actor: Actor) -> Journal:
    """Demo and tests: pay ``amount`` into the wallet from a development account of the local
    chain (in-process py-evm, an anvil node, or the Bitcoin/Solana node simulator's faucet) and
    credit the ledger for that deposit."""
    from django.conf import settings

    rail = chain_rail_of(wallet.chain)
    if wallet.chain == Chain.BITCOIN:
        tx_hash = rail.rpc("sim_fund", wallet.address, str(amount))
        return chain_deposit_credit(wallet=wallet, asset=asset, amount=amount, tx_hash=tx_hash, actor=actor)
    if wallet.chain == Chain.SOLANA:
        tx_hash = rail.rpc(_SimFund(wallet.address, amount))
        return chain_deposit_credit(wallet=wallet, asset=asset, amount=amount, tx_hash=tx_hash, actor=actor)
    wei = rail.to_base_units(amount)
    if settings.CLEARHOUSE_ETH_RPC_URL == "local":
        from rails.simulators.eth_chain import local_chain

        tx_hash = local_chain().fund(wallet.address, wei)
    else:  # a development node (anvil) with unlocked accounts
        tx = rail.w3.eth.send_transaction({"from": rail.w3.eth.accounts[0], "to": wallet.address, "value": wei})
        rail.w3.eth.wait_for_transaction_receipt(tx, timeout=30)
        tx_hash = tx.to_0x_hex()
    return chain_deposit_credit(wallet=wallet, asset=asset, amount=amount, tx_hash=tx_hash, actor=actor)


class _SimFund:
    """JSON body of the Solana simulator's faucet call (exact decimal amount, unlike RequestAirdrop)."""

    def __init__(self, address: str, amount: Decimal) -> None:
        self.address, self.amount = address, amount

    def to_json(self) -> str:
        import json

        return json.dumps({"jsonrpc": "2.0", "id": 1, "method": "sim_fund", "params": [self.address, str(self.amount)]})
