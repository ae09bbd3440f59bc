// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {FederatedLedger} from "./FederatedLedger.sol";
import {LedgerFixture} from "./FederatedLedger.t.sol";

/// @dev The differential-privacy budget: set at deployment, changed only by k of n approvals.
contract PrivacyBudgetTest is LedgerFixture {
    function budgetDigest(uint64 epsilonMicro, uint64 deltaPico, uint64 nonce) internal view returns (bytes32) {
        bytes32 structHash = keccak256(
            abi.encode(
                keccak256("PrivacyBudgetChange(uint64 epsilonMicro,uint64 deltaPico,uint64 nonce)"),
                epsilonMicro,
                deltaPico,
                nonce
            )
        );
        return keccak256(abi.encodePacked(hex"1901", domainOf(address(ledger)), structHash));
    }

    function approveBudget(uint64 epsilonMicro, uint64 deltaPico, uint256[] memory idx)
        internal
        view
        returns (bytes[] memory sigs)
    {
        (, uint64 nonce) = ledger.nonces();
        bytes32 digest = budgetDigest(epsilonMicro, deltaPico, nonce);
        sigs = new bytes[](idx.length);
        for (uint256 i = 0; i < idx.length; ++i) {
            sigs[i] = signDigest(keys[idx[i]], digest);
        }
    }

    function test_budgetSetAtDeployment() public view {
        (uint64 epsilonMicro, uint64 deltaPico) = ledger.privacyBudget();
        vm.assertEq(epsilonMicro, 8_000_000, "epsilon 8");
        vm.assertEq(deltaPico, 10_000_000, "delta 1e-5");
    }

    function test_budgetChangedWithKApprovals() public {
        ledger.setPrivacyBudget(4_000_000, 1_000_000, approveBudget(4_000_000, 1_000_000, list(0, 1, 2)));
        (uint64 epsilonMicro, uint64 deltaPico) = ledger.privacyBudget();
        vm.assertEq(epsilonMicro, 4_000_000, "epsilon 4");
        vm.assertEq(deltaPico, 1_000_000, "delta 1e-6");
        (, uint64 nonce) = ledger.nonces();
        vm.assertEq(nonce, 1, "membership nonce consumed");
    }

    function test_budgetChangeNeedsK() public {
        bytes[] memory sigs = approveBudget(100_000_000, 10_000_000, list(0, 1, 1));
        vm.expectRevert(abi.encodeWithSelector(FederatedLedger.NotEnoughApprovals.selector, 2, 3));
        ledger.setPrivacyBudget(100_000_000, 10_000_000, sigs);
        (uint64 epsilonMicro,) = ledger.privacyBudget();
        vm.assertEq(epsilonMicro, 8_000_000, "budget unchanged");
    }

    function test_approvalsForOneBudgetDoNotAuthoriseAnother() public {
        bytes[] memory sigs = approveBudget(4_000_000, 10_000_000, list(0, 1, 2));
        bytes4 sel = revertSelector(
            address(this), address(ledger), abi.encodeCall(FederatedLedger.setPrivacyBudget, (50_000_000, 10_000_000, sigs))
        );
        vm.assertTrue(sel == FederatedLedger.ApproverNotActive.selector, "other budget refused");
        // A threshold approval with the same nonce is another struct: it cannot set a budget either.
        bytes[] memory thresholdSigs = approveMembership(2, address(0), "", 3, list(0, 1, 2));
        sel = revertSelector(
            address(this),
            address(ledger),
            abi.encodeCall(FederatedLedger.setPrivacyBudget, (3, 0, thresholdSigs))
        );
        vm.assertTrue(sel == FederatedLedger.ApproverNotActive.selector, "threshold approval is not a budget approval");
    }

    function test_budgetApprovalsCannotBeReplayed() public {
        bytes[] memory sigs = approveBudget(4_000_000, 10_000_000, list(0, 1, 2));
        ledger.setPrivacyBudget(4_000_000, 10_000_000, sigs);
        ledger.setPrivacyBudget(8_000_000, 10_000_000, approveBudget(8_000_000, 10_000_000, list(0, 1, 2)));
        bytes4 sel = revertSelector(
            address(this), address(ledger), abi.encodeCall(FederatedLedger.setPrivacyBudget, (4_000_000, 10_000_000, sigs))
        );
        vm.assertTrue(sel == FederatedLedger.ApproverNotActive.selector, "replayed budget approval refused");
        (uint64 epsilonMicro,) = ledger.privacyBudget();
        vm.assertEq(epsilonMicro, 8_000_000, "budget unchanged");
    }

    function test_invalidBudgetsRejected() public {
        uint64[2][3] memory bad = [[uint64(0), uint64(10)], [uint64(1), uint64(0)], [uint64(1), uint64(1e12)]];
        for (uint256 i = 0; i < bad.length; ++i) {
            bytes[] memory sigs = approveBudget(bad[i][0], bad[i][1], list(0, 1, 2));
            vm.expectRevert(
                abi.encodeWithSelector(FederatedLedger.InvalidPrivacyBudget.selector, bad[i][0], bad[i][1])
            );
            ledger.setPrivacyBudget(bad[i][0], bad[i][1], sigs);
        }
        // No budget at all (0, 0) is a valid choice: a consortium that runs without DP.
        ledger.setPrivacyBudget(0, 0, approveBudget(0, 0, list(0, 1, 2)));
        (uint64 epsilonMicro, uint64 deltaPico) = ledger.privacyBudget();
        vm.assertEq(epsilonMicro + deltaPico, 0, "no budget");
    }

    function test_constructorRejectsInvalidBudget() public {
        address[] memory founders = new address[](1);
        string[] memory ids = new string[](1);
        (founders[0], ids[0]) = (members[0], "a");
        vm.expectRevert(abi.encodeWithSelector(FederatedLedger.InvalidPrivacyBudget.selector, uint64(8), uint64(0)));
        new FederatedLedger(aggregatorAccount, founders, ids, 1, 8, 0);
    }
}
