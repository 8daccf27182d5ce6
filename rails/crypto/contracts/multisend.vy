# pragma version 0.4.3
# pragma evm-version cancun
"""
@title Clearhouse multisend
@notice Pays many externally owned accounts in one transaction, one event per transfer carrying
        its settlement reference. The caller sends exactly the sum of the amounts; everything is
        paid out within the call, so the contract never holds funds. It has no owner, no storage
        and no fallback: plain ether sent to it is refused.
@dev    Any failed check or transfer reverts the whole call: a batch settles completely or not at
        all. Recipients with code (contracts, and EOAs carrying an EIP-7702 delegation) are
        refused, so no recipient code runs during the call and no recipient can make it revert.
"""

MAX_TRANSFERS: constant(uint256) = 1000


struct Transfer:
    recipient: address
    amount: uint256
    reference: bytes32


event Sent:
    reference: indexed(bytes32)
    recipient: indexed(address)
    amount: uint256


@external
@payable
def multisend(transfers: DynArray[Transfer, MAX_TRANSFERS]):
    """
    @notice Pay every transfer in order and log one Sent event for each.
    @param transfers (recipient, amount in wei, settlement reference); 1 to MAX_TRANSFERS items.
    """
    assert len(transfers) > 0, "multisend: empty batch"
    total: uint256 = 0
    for t: Transfer in transfers:
        total += t.amount
    assert total == msg.value, "multisend: msg.value != sum of amounts"
    for t: Transfer in transfers:
        assert t.amount > 0, "multisend: zero amount"
        assert t.recipient != empty(address), "multisend: zero recipient"
        assert not t.recipient.is_contract, "multisend: recipient has code"
        send(t.recipient, t.amount)
        log Sent(reference=t.reference, recipient=t.recipient, amount=t.amount)
