// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";

/**
 * @title RewardsDistributor
 * @notice Pays rewards from per-epoch Merkle roots of cumulative entitlements. Emissions
 * ({fund}) and oracle fee prepayments ({depositFees}) fill the pool; each epoch the poster
 * publishes the root of an OpenZeppelin `StandardMerkleTree` over `(address, uint256
 * cumulative)` leaves; anyone may then claim for any account the difference between its
 * cumulative entitlement and what it has already been paid.
 *
 * Safety: the root's total must be covered by what was funded and deposited, totals never
 * decrease, and the contract never pays out more in total than the current root's total.
 */
contract RewardsDistributor is AccessControl {
    using SafeERC20 for IERC20;

    /// @notice Role allowed to call {postRoot}.
    bytes32 public constant POSTER_ROLE = keccak256("POSTER_ROLE");

    /// @notice The reward token.
    IERC20 public immutable token;
    /// @notice Epoch of {root}; zero before the first post.
    uint256 public currentEpoch;
    /// @notice Merkle root of epoch {currentEpoch}.
    bytes32 public root;
    /// @notice Merkle root of epoch `currentEpoch - 1`, still accepted by {claim}.
    bytes32 public previousRoot;
    /// @notice Sum of all cumulative entitlements in {root}.
    uint256 public totalCumulative;
    /// @notice Sum of all {fund} amounts.
    uint256 public totalFunded;
    /// @notice Sum of all {depositFees} amounts.
    uint256 public totalFeesDeposited;
    /// @notice Sum of all {claim} payments.
    uint256 public totalClaimed;
    /// @notice Fees prepaid by each oracle, in total.
    mapping(address oracle => uint256) public feesDeposited;
    /// @notice Cumulative amount already paid to each account.
    mapping(address account => uint256) public claimed;

    /// @notice `funder` added `amount` of emissions; `newTotalFunded` is the sum of all funding.
    event Funded(address indexed funder, uint256 amount, uint256 newTotalFunded);
    /// @notice `oracle` prepaid `amount` of fees; `deposited` is its total, `newTotalFeesDeposited` all oracles'.
    event FeesDeposited(address indexed oracle, uint256 amount, uint256 deposited, uint256 newTotalFeesDeposited);
    /// @notice Epoch `epoch` published `root` whose entitlements sum to `totalCumulative`.
    event RootPosted(uint256 indexed epoch, bytes32 root, uint256 totalCumulative, bytes32 statementHash);
    /// @notice `account` was paid `amount`; `cumulative` is what it has been paid in total.
    event Claimed(address indexed account, uint256 amount, uint256 cumulative);

    /// @dev An amount of zero was given.
    error RewardsDistributorZeroAmount();
    /// @dev `epoch` was posted but `expected` is the only epoch that may be posted next.
    error RewardsDistributorUnexpectedEpoch(uint256 epoch, uint256 expected);
    /// @dev The new `totalCumulative` is below the current one, `current`.
    error RewardsDistributorDecreasingTotal(uint256 totalCumulative, uint256 current);
    /// @dev `totalCumulative` exceeds the `available` sum of funding and fee deposits.
    error RewardsDistributorUnderfunded(uint256 totalCumulative, uint256 available);
    /// @dev The leaf `(account, cumulative)` is in neither the current nor the previous root.
    error RewardsDistributorInvalidProof(address account, uint256 cumulative);
    /// @dev `account` has already been paid `alreadyClaimed`, at least its proven `cumulative`.
    error RewardsDistributorNothingToClaim(address account, uint256 cumulative, uint256 alreadyClaimed);
    /// @dev Paying would raise the total paid to `totalClaimed`, above the root's `totalCumulative`.
    error RewardsDistributorExceedsTotal(uint256 totalClaimed, uint256 totalCumulative);

    /**
     * @notice Creates the distributor with no root.
     * @param rewardToken The token paid out.
     * @param admin Account given {DEFAULT_ADMIN_ROLE}, which grants and revokes {POSTER_ROLE}.
     */
    constructor(IERC20 rewardToken, address admin) {
        token = rewardToken;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
    }

    /**
     * @notice Pulls `amount` tokens of emissions from the caller into the pool.
     * @dev Anyone may fund. Needs an allowance of `amount`. Emits {Funded}.
     * @param amount Tokens, in wei.
     */
    function fund(uint256 amount) external {
        if (amount == 0) revert RewardsDistributorZeroAmount();
        uint256 newTotal = totalFunded + amount;
        totalFunded = newTotal;
        emit Funded(msg.sender, amount, newTotal);
        token.safeTransferFrom(msg.sender, address(this), amount);
    }

    /**
     * @notice Pulls `amount` tokens of prepaid request fees from the calling oracle.
     * @dev Anyone may deposit; settlement decides whose deposits count. Deposits are spent
     * through the statements and not refunded here. Needs an allowance. Emits {FeesDeposited}.
     * @param amount Tokens, in wei.
     */
    function depositFees(uint256 amount) external {
        if (amount == 0) revert RewardsDistributorZeroAmount();
        uint256 deposited = feesDeposited[msg.sender] + amount;
        uint256 newTotal = totalFeesDeposited + amount;
        feesDeposited[msg.sender] = deposited;
        totalFeesDeposited = newTotal;
        emit FeesDeposited(msg.sender, amount, deposited, newTotal);
        token.safeTransferFrom(msg.sender, address(this), amount);
    }

    /**
     * @notice Publishes the root of epoch `epoch`; the current root becomes the previous one.
     * @dev Only {POSTER_ROLE}. `epoch` must be `currentEpoch + 1`, so no epoch is skipped or
     * posted twice. An epoch without any leaf posts `bytes32(0)`. Emits {RootPosted}.
     * @param epoch The next epoch.
     * @param newRoot Root of the StandardMerkleTree of `(address, uint256)` leaves.
     * @param newTotalCumulative Sum of the tree's cumulative amounts: not below the current
     * total and not above {totalFunded} + {totalFeesDeposited}.
     * @param statementHash Hash of the full off-chain statement, for auditors.
     */
    function postRoot(uint256 epoch, bytes32 newRoot, uint256 newTotalCumulative, bytes32 statementHash)
        external
        onlyRole(POSTER_ROLE)
    {
        uint256 expected = currentEpoch + 1;
        if (epoch != expected) revert RewardsDistributorUnexpectedEpoch(epoch, expected);
        if (newTotalCumulative < totalCumulative) {
            revert RewardsDistributorDecreasingTotal(newTotalCumulative, totalCumulative);
        }
        uint256 available = totalFunded + totalFeesDeposited;
        if (newTotalCumulative > available) revert RewardsDistributorUnderfunded(newTotalCumulative, available);
        currentEpoch = epoch;
        previousRoot = root;
        root = newRoot;
        totalCumulative = newTotalCumulative;
        emit RootPosted(epoch, newRoot, newTotalCumulative, statementHash);
    }

    /**
     * @notice Pays `account` its `cumulative` entitlement minus what it was already paid.
     * @dev Anyone may claim for anyone; tokens always go to `account`. The proof may be against
     * {root} or {previousRoot}. A claim that would pay nothing reverts with
     * {RewardsDistributorNothingToClaim}. Emits {Claimed}.
     * @param account The entitled account, and receiver.
     * @param cumulative The account's cumulative entitlement in the proven leaf.
     * @param proof Sibling hashes from the leaf up to the root.
     * @return amount Tokens paid, in wei.
     */
    function claim(address account, uint256 cumulative, bytes32[] calldata proof)
        external
        returns (uint256 amount)
    {
        if (!_isEntitled(account, cumulative, proof)) revert RewardsDistributorInvalidProof(account, cumulative);
        uint256 alreadyClaimed = claimed[account];
        if (cumulative <= alreadyClaimed) {
            revert RewardsDistributorNothingToClaim(account, cumulative, alreadyClaimed);
        }
        amount = cumulative - alreadyClaimed;
        uint256 newTotalClaimed = totalClaimed + amount;
        if (newTotalClaimed > totalCumulative) {
            revert RewardsDistributorExceedsTotal(newTotalClaimed, totalCumulative);
        }
        claimed[account] = cumulative;
        totalClaimed = newTotalClaimed;
        emit Claimed(account, amount, cumulative);
        token.safeTransfer(account, amount);
    }

    function _isEntitled(address account, uint256 cumulative, bytes32[] calldata proof)
        private
        view
        returns (bool)
    {
        bytes32 leaf = keccak256(bytes.concat(keccak256(abi.encode(account, cumulative))));
        bytes32 computed = MerkleProof.processProofCalldata(proof, leaf);
        return computed == root || computed == previousRoot;
    }
}
