// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {EnumerableSet} from "@openzeppelin/contracts/utils/structs/EnumerableSet.sol";

/**
 * @title NodeStaking
 * @notice Nodes stake the network token in one role, worker or oracle. Unstaking moves tokens
 * into a lock that can be withdrawn after a cooldown; active and locked tokens stay slashable
 * until withdrawn, and slashed tokens go to the treasury.
 *
 * Role rule: an address holds at most one role at a time. The role is set by the first
 * {stake} and kept while the node has active stake or open locks; once both are zero (fully
 * withdrawn or slashed) the address is released and may stake again in either role.
 */
contract NodeStaking is AccessControl {
    using SafeERC20 for IERC20;
    using EnumerableSet for EnumerableSet.UintSet;

    /// @notice Role allowed to call {slash}.
    bytes32 public constant SLASHER_ROLE = keccak256("SLASHER_ROLE");
    /// @notice Role value of an address that holds no stake and no lock.
    uint8 public constant NO_ROLE = 0;
    /// @notice Role value of a worker node.
    uint8 public constant WORKER = 1;
    /// @notice Role value of an oracle node.
    uint8 public constant ORACLE = 2;
    /// @notice Most open locks one node may hold, which bounds the gas of {slash}.
    uint256 public constant MAX_OPEN_LOCKS = 16;
    /// @notice Longest cooldown the admin may set.
    uint64 public constant MAX_COOLDOWN = 365 days;

    /// @notice Tokens on their way out, withdrawable from `unlockAt` on (one storage slot).
    struct Lock {
        uint64 unlockAt;
        uint192 amount;
    }

    /// @dev `role` and `stake` share a slot, so a first stake writes one new slot, not two.
    struct Node {
        uint8 role;
        uint248 stake;
        uint256 locked;
    }

    /// @notice The staked token.
    IERC20 public immutable token;
    /// @notice Receiver of slashed tokens.
    address public treasury;
    /// @notice Seconds between {requestUnstake} and the earliest {withdraw} of its lock.
    uint64 public cooldown;
    /// @notice Sum of all nodes' active stake.
    uint256 public totalStaked;
    /// @notice Sum of all open locks.
    uint256 public totalLocked;

    uint256 private _lastLockId;
    mapping(uint8 role => uint256) private _minStake;
    mapping(address node => Node) private _nodes;
    mapping(address node => mapping(uint256 lockId => Lock)) private _locks;
    mapping(address node => EnumerableSet.UintSet) private _openLocks;

    /// @notice `node` added `amount` to its stake in `role`; `newStake` is its active stake now.
    event Staked(address indexed node, uint8 indexed role, uint256 amount, uint256 newStake);
    /// @notice `amount` moved from active stake into lock `lockId`, withdrawable from `unlockAt`.
    event UnstakeRequested(
        address indexed node,
        uint256 indexed lockId,
        uint256 amount,
        uint64 unlockAt,
        uint256 newStake,
        uint256 newLocked
    );
    /// @notice Lock `lockId` paid `amount` back to `node`; `newLocked` is what it still has locked.
    event Withdrawn(address indexed node, uint256 indexed lockId, uint256 amount, uint256 newLocked);
    /// @notice A slash took `amount` from lock `lockId`, which now holds `remaining`.
    event LockSlashed(address indexed node, uint256 indexed lockId, uint256 amount, uint256 remaining);
    /// @notice `amount` was taken from `node` (stake first, then locks) and sent to the treasury.
    event Slashed(
        address indexed node, bytes32 indexed reason, uint256 amount, uint256 newStake, uint256 newLocked
    );
    /// @notice The minimum stake of `role` is now `minimum`.
    event MinimumStakeUpdated(uint8 indexed role, uint256 minimum);
    /// @notice Locks requested from now on unlock `cooldown` seconds after the request.
    event CooldownUpdated(uint64 cooldown);
    /// @notice Slashed tokens go to `treasury` from now on.
    event TreasuryUpdated(address treasury);

    /// @dev `role` is neither {WORKER} nor {ORACLE}.
    error NodeStakingInvalidRole(uint8 role);
    /// @dev `node` holds `role` and cannot stake as `requested` until it is released.
    error NodeStakingRoleMismatch(address node, uint8 role, uint8 requested);
    /// @dev An amount of zero was given.
    error NodeStakingZeroAmount();
    /// @dev The zero address was given as the treasury.
    error NodeStakingZeroTreasury();
    /// @dev The operation would leave a non-zero stake of `newStake` below `minimum` for `role`.
    error NodeStakingBelowMinimum(uint8 role, uint256 newStake, uint256 minimum);
    /// @dev `node` has `stake` active tokens, fewer than the `requested` amount.
    error NodeStakingInsufficientStake(address node, uint256 stake, uint256 requested);
    /// @dev `node` already holds `maximum` open locks.
    error NodeStakingTooManyLocks(address node, uint256 maximum);
    /// @dev `lockId` is not an open lock of `node`.
    error NodeStakingUnknownLock(address node, uint256 lockId);
    /// @dev Lock `lockId` cannot be withdrawn before `unlockAt`.
    error NodeStakingLockNotReady(uint256 lockId, uint64 unlockAt);
    /// @dev `node` holds neither stake nor locks.
    error NodeStakingNothingToSlash(address node);
    /// @dev `cooldown` exceeds {MAX_COOLDOWN}.
    error NodeStakingCooldownTooLong(uint64 cooldown, uint64 maximum);

    /**
     * @notice Creates the staking contract and sets its parameters.
     * @param stakedToken The token nodes stake (a plain ERC-20 without transfer fees).
     * @param admin Account given {DEFAULT_ADMIN_ROLE}: sets parameters and grants {SLASHER_ROLE}.
     * @param initialTreasury Receiver of slashed tokens.
     * @param initialCooldown Seconds a lock waits before it can be withdrawn.
     * @param minWorkerStake Minimum non-zero stake of a worker.
     * @param minOracleStake Minimum non-zero stake of an oracle.
     */
    constructor(
        IERC20 stakedToken,
        address admin,
        address initialTreasury,
        uint64 initialCooldown,
        uint256 minWorkerStake,
        uint256 minOracleStake
    ) {
        token = stakedToken;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _setTreasury(initialTreasury);
        _setCooldown(initialCooldown);
        _setMinStake(WORKER, minWorkerStake);
        _setMinStake(ORACLE, minOracleStake);
    }

    /**
     * @notice Pulls `amount` tokens from the caller into its active stake in `role`.
     * @dev Needs an allowance of `amount`. Reverts when the resulting stake is below the role's
     * minimum, or when the caller already holds the other role. Emits {Staked}.
     * @param role {WORKER} or {ORACLE}.
     * @param amount Tokens to add, in wei.
     */
    function stake(uint8 role, uint256 amount) external {
        _requireValidRole(role);
        if (amount == 0) revert NodeStakingZeroAmount();
        Node storage node = _nodes[msg.sender];
        if (node.role != NO_ROLE && node.role != role) {
            revert NodeStakingRoleMismatch(msg.sender, node.role, role);
        }
        uint256 newStake = node.stake + amount;
        _requireMinimum(role, newStake);
        node.role = role;
        node.stake = SafeCast.toUint248(newStake);
        totalStaked += amount;
        emit Staked(msg.sender, role, amount, newStake);
        token.safeTransferFrom(msg.sender, address(this), amount);
    }

    /**
     * @notice Moves `amount` of the caller's active stake into a new lock.
     * @dev The remaining stake must be zero or at least the role's minimum. The lock unlocks
     * {cooldown} seconds from now and stays slashable until withdrawn. Emits {UnstakeRequested}.
     * @param amount Tokens to unstake, in wei.
     * @return lockId Identifier of the new lock, unique across all nodes.
     */
    function requestUnstake(uint256 amount) external returns (uint256 lockId) {
        if (amount == 0) revert NodeStakingZeroAmount();
        Node storage node = _nodes[msg.sender];
        if (amount > node.stake) revert NodeStakingInsufficientStake(msg.sender, node.stake, amount);
        uint256 newStake = node.stake - amount;
        if (newStake != 0) _requireMinimum(node.role, newStake);
        uint64 unlockAt;
        (lockId, unlockAt) = _openLock(msg.sender, amount);
        node.stake = uint248(newStake);
        node.locked += amount;
        totalStaked -= amount;
        totalLocked += amount;
        emit UnstakeRequested(msg.sender, lockId, amount, unlockAt, newStake, node.locked);
    }

    /**
     * @notice Pays the caller what is left in its lock `lockId` once the cooldown has passed.
     * @dev Closes the lock; releases the caller's role when nothing else is staked or locked.
     * Emits {Withdrawn}.
     * @param lockId An open lock of the caller.
     * @return amount Tokens paid, in wei (less than requested if the lock was slashed).
     */
    function withdraw(uint256 lockId) external returns (uint256 amount) {
        if (!_openLocks[msg.sender].remove(lockId)) revert NodeStakingUnknownLock(msg.sender, lockId);
        Lock memory lock = _locks[msg.sender][lockId];
        if (block.timestamp < lock.unlockAt) revert NodeStakingLockNotReady(lockId, lock.unlockAt);
        delete _locks[msg.sender][lockId];
        amount = lock.amount;
        Node storage node = _nodes[msg.sender];
        node.locked -= amount;
        totalLocked -= amount;
        _releaseIfEmpty(node);
        emit Withdrawn(msg.sender, lockId, amount, node.locked);
        token.safeTransfer(msg.sender, amount);
    }

    /**
     * @notice Takes up to `amount` tokens from `node` and sends them to the treasury.
     * @dev Takes from active stake first, then from open locks, from the last entry of
     * {locksOf} backwards. A slash larger than what the node holds takes all of it, so a
     * withdrawal racing the slash cannot void it. Emits {LockSlashed} per lock touched, then
     * {Slashed}.
     * @param node The node to slash.
     * @param amount Tokens to take, in wei.
     * @param reason Machine-readable reason code or evidence hash, indexed in {Slashed}.
     * @return slashed Tokens actually taken.
     */
    function slash(address node, uint256 amount, bytes32 reason)
        external
        onlyRole(SLASHER_ROLE)
        returns (uint256 slashed)
    {
        if (amount == 0) revert NodeStakingZeroAmount();
        Node storage info = _nodes[node];
        uint256 fromStake = Math.min(amount, info.stake);
        info.stake -= uint248(fromStake);
        totalStaked -= fromStake;
        slashed = fromStake + _slashLocks(node, info, amount - fromStake);
        if (slashed == 0) revert NodeStakingNothingToSlash(node);
        _releaseIfEmpty(info);
        emit Slashed(node, reason, slashed, info.stake, info.locked);
        token.safeTransfer(treasury, slashed);
    }

    /**
     * @notice Sets the minimum non-zero stake of `role`; existing stakes are not touched.
     * @dev Only {DEFAULT_ADMIN_ROLE}. Emits {MinimumStakeUpdated}.
     * @param role {WORKER} or {ORACLE}.
     * @param minimum Minimum stake, in wei.
     */
    function setMinStake(uint8 role, uint256 minimum) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _setMinStake(role, minimum);
    }

    /**
     * @notice Sets the cooldown of locks requested from now on; open locks keep their time.
     * @dev Only {DEFAULT_ADMIN_ROLE}; at most {MAX_COOLDOWN}. Emits {CooldownUpdated}.
     * @param newCooldown Cooldown in seconds.
     */
    function setCooldown(uint64 newCooldown) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _setCooldown(newCooldown);
    }

    /**
     * @notice Sets the receiver of slashed tokens.
     * @dev Only {DEFAULT_ADMIN_ROLE}. Emits {TreasuryUpdated}.
     * @param newTreasury Non-zero receiver address.
     */
    function setTreasury(address newTreasury) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _setTreasury(newTreasury);
    }

    /**
     * @notice Active (not locked) stake of `node`.
     * @param node The node.
     * @return Tokens, in wei.
     */
    function stakeOf(address node) external view returns (uint256) {
        return _nodes[node].stake;
    }

    /**
     * @notice Sum of the open locks of `node`.
     * @param node The node.
     * @return Tokens, in wei.
     */
    function lockedOf(address node) external view returns (uint256) {
        return _nodes[node].locked;
    }

    /**
     * @notice Role held by `node`: {NO_ROLE}, {WORKER} or {ORACLE}.
     * @param node The node.
     * @return The role value.
     */
    function roleOf(address node) external view returns (uint8) {
        return _nodes[node].role;
    }

    /**
     * @notice Whether `node` holds a role with a non-zero active stake of at least its minimum.
     * @dev A slash can leave a stake below the minimum; such a node is not active.
     * @param node The node.
     * @return True when the node may serve its role.
     */
    function isActive(address node) external view returns (bool) {
        Node storage info = _nodes[node];
        return info.role != NO_ROLE && info.stake != 0 && info.stake >= _minStake[info.role];
    }

    /**
     * @notice Identifiers of the open locks of `node`, in slashing order reversed.
     * @param node The node.
     * @return Lock identifiers; at most {MAX_OPEN_LOCKS}.
     */
    function locksOf(address node) external view returns (uint256[] memory) {
        return _openLocks[node].values();
    }

    /**
     * @notice An open lock of `node`; both fields are zero once it is withdrawn or fully slashed.
     * @param node The node.
     * @param lockId The lock.
     * @return The lock's unlock time and remaining amount.
     */
    function lockOf(address node, uint256 lockId) external view returns (Lock memory) {
        return _locks[node][lockId];
    }

    /**
     * @notice Minimum non-zero stake of `role`.
     * @param role {WORKER} or {ORACLE}.
     * @return Tokens, in wei.
     */
    function minStake(uint8 role) external view returns (uint256) {
        _requireValidRole(role);
        return _minStake[role];
    }

    function _openLock(address node, uint256 amount) private returns (uint256 lockId, uint64 unlockAt) {
        EnumerableSet.UintSet storage open = _openLocks[node];
        if (open.length() >= MAX_OPEN_LOCKS) revert NodeStakingTooManyLocks(node, MAX_OPEN_LOCKS);
        lockId = ++_lastLockId;
        unlockAt = uint64(block.timestamp) + cooldown;
        _locks[node][lockId] = Lock(unlockAt, SafeCast.toUint192(amount));
        open.add(lockId);
    }

    /// @dev Takes up to `wanted` from the open locks of `node`, newest entry first.
    function _slashLocks(address node, Node storage info, uint256 wanted) private returns (uint256 taken) {
        if (wanted == 0) return 0;
        EnumerableSet.UintSet storage open = _openLocks[node];
        for (uint256 i = open.length(); i > 0 && taken < wanted; --i) {
            uint256 lockId = open.at(i - 1);
            Lock storage lock = _locks[node][lockId];
            uint256 cut = Math.min(wanted - taken, lock.amount);
            uint256 remaining = lock.amount - cut;
            taken += cut;
            if (remaining == 0) {
                open.remove(lockId); // the last entry: a pop, so the walk stays in order
                delete _locks[node][lockId];
            } else {
                lock.amount = uint192(remaining);
            }
            emit LockSlashed(node, lockId, cut, remaining);
        }
        info.locked -= taken;
        totalLocked -= taken;
    }

    function _releaseIfEmpty(Node storage node) private {
        if (node.stake == 0 && node.locked == 0) node.role = NO_ROLE;
    }

    function _setMinStake(uint8 role, uint256 minimum) private {
        _requireValidRole(role);
        _minStake[role] = minimum;
        emit MinimumStakeUpdated(role, minimum);
    }

    function _setCooldown(uint64 newCooldown) private {
        if (newCooldown > MAX_COOLDOWN) revert NodeStakingCooldownTooLong(newCooldown, MAX_COOLDOWN);
        cooldown = newCooldown;
        emit CooldownUpdated(newCooldown);
    }

    function _setTreasury(address newTreasury) private {
        if (newTreasury == address(0)) revert NodeStakingZeroTreasury();
        treasury = newTreasury;
        emit TreasuryUpdated(newTreasury);
    }

    function _requireValidRole(uint8 role) private pure {
        if (role != WORKER && role != ORACLE) revert NodeStakingInvalidRole(role);
    }

    function _requireMinimum(uint8 role, uint256 newStake) private view {
        uint256 minimum = _minStake[role];
        if (newStake < minimum) revert NodeStakingBelowMinimum(role, newStake, minimum);
    }
}
