// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Permit.sol";

/**
 * @title MasaToken
 * @notice Stand-in for the network token: a plain ERC-20 with EIP-2612 permits whose supply
 * grows only through accounts holding {MINTER_ROLE}.
 */
contract MasaToken is ERC20, ERC20Permit, AccessControl {
    /// @notice Role allowed to call {mint}.
    bytes32 public constant MINTER_ROLE = keccak256("MINTER_ROLE");

    /**
     * @notice Creates the token with no supply.
     * @param admin Account given {DEFAULT_ADMIN_ROLE}, which grants and revokes {MINTER_ROLE}.
     */
    constructor(address admin) ERC20("Masa", "MASA") ERC20Permit("Masa") {
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
    }

    /**
     * @notice Creates `amount` tokens and assigns them to `to`.
     * @dev Emits the ERC-20 {Transfer} event from the zero address.
     * @param to Receiver of the new tokens.
     * @param amount Number of tokens, in wei.
     */
    function mint(address to, uint256 amount) external onlyRole(MINTER_ROLE) {
        _mint(to, amount);
    }
}
