// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {FederatedLedger} from "./FederatedLedger.sol";
import {CheatcodeTest, Vm} from "./test/Cheatcodes.t.sol";

/// @dev Shared set-up: five institutions, k = 3, an aggregator, and helpers that sign EIP-712
/// approvals. The typed-data digest is assembled here from the EIP-712 rules, independently of the
/// contract's own hashing (which a test compares against it).
abstract contract LedgerFixture is CheatcodeTest {
    FederatedLedger internal ledger;
    uint256 internal constant AGGREGATOR_KEY = 0xA11CE;
    uint256 internal constant OUTSIDER_KEY = 0xBAD;
    uint256[5] internal keys = [uint256(0x1001), 0x1002, 0x1003, 0x1004, 0x1005];
    address[5] internal members;
    address internal aggregatorAccount;

    string internal constant BASE_CID = "QmbaseBaseBaseBaseBaseBaseBaseBaseBaseBaseBase";
    bytes32 internal constant BASE_DIGEST = keccak256("base model");
    string internal constant UPDATE_CID = "QmUpdateUpdateUpdateUpdateUpdateUpdateUpdateUp";
    string internal constant GLOBAL_CID = "QmGlobalGlobalGlobalGlobalGlobalGlobalGlobalGl";
    bytes32 internal constant GLOBAL_DIGEST = keccak256("global model 0");
    bytes32 internal constant UPDATES_ROOT = keccak256("updates root");
    string internal constant MANIFEST_CID = "QmManifestManifestManifestManifestManifestMani";
    bytes32 internal constant MANIFEST_DIGEST = keccak256("round manifest");
    bytes internal constant SM9_SIG = hex"30660420aabbccddeeff00112233445566778899aabbccddeeff001122334455667788990442048899";

    function setUp() public virtual {
        aggregatorAccount = vm.addr(AGGREGATOR_KEY);
        address[] memory founders = new address[](5);
        string[] memory ids = new string[](5);
        for (uint256 i = 0; i < 5; ++i) {
            members[i] = vm.addr(keys[i]);
            founders[i] = members[i];
            ids[i] = string(abi.encodePacked("hospital-", bytes1(uint8(0x61 + i))));
        }
        ledger = new FederatedLedger(aggregatorAccount, founders, ids, 3, 8_000_000, 10_000_000);
    }

    // ---------------------------------------------------------------- EIP-712, written out by hand

    function domainOf(address verifyingContract) internal view returns (bytes32) {
        return keccak256(
            abi.encode(
                keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                keccak256("FederatedLedger"),
                keccak256("1"),
                block.chainid,
                verifyingContract
            )
        );
    }

    /// The standard test record of round `round`, accounting for the submissions made so far.
    function model(uint64 round) internal view returns (FederatedLedger.GlobalModel memory) {
        (,,, uint32 count) = ledger.roundState();
        return FederatedLedger.GlobalModel(round, GLOBAL_CID, GLOBAL_DIGEST, UPDATES_ROOT, MANIFEST_CID, MANIFEST_DIGEST, count);
    }

    function globalModelDigest(
        address verifyingContract,
        FederatedLedger.GlobalModel memory m,
        bytes memory sm9Sig,
        uint64 nonce
    ) internal view returns (bytes32) {
        bytes32 structHash = keccak256(
            abi.encode(
                keccak256(
                    "GlobalModel(uint64 round,string cid,bytes32 digest,bytes32 updatesRoot,string manifestCid,"
                    "bytes32 manifestDigest,uint32 entryCount,bytes sm9Signature,uint64 nonce)"
                ),
                m.round,
                keccak256(bytes(m.cid)),
                m.digest,
                m.updatesRoot,
                keccak256(bytes(m.manifestCid)),
                m.manifestDigest,
                m.entryCount,
                keccak256(sm9Sig),
                nonce
            )
        );
        return keccak256(abi.encodePacked(hex"1901", domainOf(verifyingContract), structHash));
    }

    function membershipDigest(uint8 action, address account, string memory sm9Id, uint32 k, uint64 nonce)
        internal
        view
        returns (bytes32)
    {
        bytes32 structHash = keccak256(
            abi.encode(
                keccak256("MembershipChange(uint8 action,address account,string sm9Id,uint32 threshold,uint64 nonce)"),
                action,
                account,
                keccak256(bytes(sm9Id)),
                k,
                nonce
            )
        );
        return keccak256(abi.encodePacked(hex"1901", domainOf(address(ledger)), structHash));
    }

    function signDigest(uint256 key, bytes32 digest) internal pure returns (bytes memory) {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(key, digest);
        return abi.encodePacked(r, s, v);
    }

    /// Approvals of the round-`round` global model (standard test record) by members[idx[i]].
    function approveGlobal(uint64 round, uint256[] memory idx) internal view returns (bytes[] memory sigs) {
        (uint64 nonce,) = ledger.nonces();
        bytes32 digest = globalModelDigest(address(ledger), model(round), SM9_SIG, nonce);
        sigs = new bytes[](idx.length);
        for (uint256 i = 0; i < idx.length; ++i) {
            sigs[i] = signDigest(keys[idx[i]], digest);
        }
    }

    function approveMembership(uint8 action, address account, string memory sm9Id, uint32 k, uint256[] memory idx)
        internal
        view
        returns (bytes[] memory sigs)
    {
        (, uint64 nonce) = ledger.nonces();
        bytes32 digest = membershipDigest(action, account, sm9Id, k, nonce);
        sigs = new bytes[](idx.length);
        for (uint256 i = 0; i < idx.length; ++i) {
            sigs[i] = signDigest(keys[idx[i]], digest);
        }
    }

    function list(uint256 a, uint256 b) internal pure returns (uint256[] memory out) {
        out = new uint256[](2);
        (out[0], out[1]) = (a, b);
    }

    function list(uint256 a, uint256 b, uint256 c) internal pure returns (uint256[] memory out) {
        out = new uint256[](3);
        (out[0], out[1], out[2]) = (a, b, c);
    }

    function list(uint256 a, uint256 b, uint256 c, uint256 d) internal pure returns (uint256[] memory out) {
        out = new uint256[](4);
        (out[0], out[1], out[2], out[3]) = (a, b, c, d);
    }

    function openRound0() internal {
        vm.prank(aggregatorAccount);
        ledger.openRound(0, BASE_CID, BASE_DIGEST);
    }

    function submitAs(uint256 i, uint64 round) internal {
        vm.prank(members[i]);
        ledger.submitUpdate(round, UPDATE_CID, keccak256(abi.encode(i, round)), keccak256("map"), 100, 500_000, SM9_SIG);
    }

    function post(uint64 round, bytes[] memory sigs) internal {
        FederatedLedger.GlobalModel memory m = model(round);
        vm.prank(aggregatorAccount);
        ledger.postGlobalModel(m, SM9_SIG, sigs);
    }

    /// Calls `target` as `sender` and returns the 4-byte selector it reverted with (0 if it did not).
    function revertSelector(address sender, address target, bytes memory data) internal returns (bytes4 selector) {
        vm.prank(sender);
        (bool ok, bytes memory ret) = target.call(data);
        if (ok || ret.length < 4) return bytes4(0);
        assembly ("memory-safe") {
            selector := mload(add(ret, 32))
        }
    }

    function postCall(uint64 round, bytes[] memory sigs) internal view returns (bytes memory) {
        return abi.encodeCall(FederatedLedger.postGlobalModel, (model(round), SM9_SIG, sigs));
    }
}

contract FederatedLedgerMembershipTest is LedgerFixture {
    function test_constructorRegistersFoundersAndThreshold() public view {
        vm.assertEq(ledger.threshold(), 3, "k");
        vm.assertEq(ledger.activeInstitutionCount(), 5, "n");
        vm.assertEq(ledger.aggregator(), aggregatorAccount, "aggregator");
        (address[] memory accounts, string[] memory ids, bool[] memory active) = ledger.institutions();
        vm.assertEq(accounts.length, 5, "registered");
        for (uint256 i = 0; i < 5; ++i) {
            vm.assertEq(accounts[i], members[i], "order");
            vm.assertTrue(active[i], "active");
            vm.assertEq(ledger.sm9IdOwner(ids[i]), members[i], "sm9 id bound");
        }
    }

    function test_constructorRejectsThresholdAboveMembers() public {
        address[] memory founders = new address[](2);
        string[] memory ids = new string[](2);
        (founders[0], founders[1]) = (members[0], members[1]);
        (ids[0], ids[1]) = ("a", "b");
        vm.expectRevert(abi.encodeWithSelector(FederatedLedger.InvalidThreshold.selector, uint32(3), uint32(2)));
        new FederatedLedger(aggregatorAccount, founders, ids, 3, 8_000_000, 10_000_000);
    }

    function test_constructorRejectsSharedSm9Id() public {
        address[] memory founders = new address[](2);
        string[] memory ids = new string[](2);
        (founders[0], founders[1]) = (members[0], members[1]);
        (ids[0], ids[1]) = ("same", "same");
        vm.expectRevert(abi.encodeWithSelector(FederatedLedger.Sm9IdTaken.selector, "same", members[0]));
        new FederatedLedger(aggregatorAccount, founders, ids, 1, 8_000_000, 10_000_000);
    }

    function test_addInstitutionWithKApprovals() public {
        address newcomer = vm.addr(0x2001);
        bytes[] memory sigs = approveMembership(0, newcomer, "hospital-f", 4, list(0, 1, 2));
        ledger.addInstitution(newcomer, "hospital-f", 4, sigs);
        (bool active, bool registered,, string memory id) = ledger.institution(newcomer);
        vm.assertTrue(active && registered, "newcomer active");
        vm.assertEq(keccak256(bytes(id)), keccak256("hospital-f"), "sm9 id");
        vm.assertEq(ledger.threshold(), 4, "k after change");
        vm.assertEq(ledger.activeInstitutionCount(), 6, "n after change");
    }

    function test_membershipChangeNeedsK() public {
        address newcomer = vm.addr(0x2001);
        bytes[] memory sigs = approveMembership(0, newcomer, "hospital-f", 3, list(0, 1));
        vm.expectRevert(abi.encodeWithSelector(FederatedLedger.NotEnoughApprovals.selector, 2, 3));
        ledger.addInstitution(newcomer, "hospital-f", 3, sigs);

        sigs = approveMembership(1, members[4], "", 3, list(3, 4));
        vm.expectRevert(abi.encodeWithSelector(FederatedLedger.NotEnoughApprovals.selector, 2, 3));
        ledger.removeInstitution(members[4], 3, sigs);

        sigs = approveMembership(2, address(0), "", 2, list(0, 0, 1));
        vm.expectRevert(abi.encodeWithSelector(FederatedLedger.NotEnoughApprovals.selector, 2, 3));
        ledger.setThreshold(2, sigs);
        vm.assertEq(ledger.threshold(), 3, "k unchanged");
    }

    function test_removeAndThresholdChange() public {
        ledger.removeInstitution(members[4], 2, approveMembership(1, members[4], "", 2, list(0, 1, 2)));
        (bool active,,,) = ledger.institution(members[4]);
        vm.assertFalse(active, "removed");
        vm.assertEq(ledger.threshold(), 2, "k lowered in the same change");
        vm.assertEq(ledger.activeInstitutionCount(), 4, "n");
        // k = 2 now: two approvals pass, and the removed institution's approval is refused.
        ledger.setThreshold(4, approveMembership(2, address(0), "", 4, list(0, 1)));
        vm.assertEq(ledger.threshold(), 4, "k raised");
        bytes[] memory sigs = approveMembership(2, address(0), "", 3, list(0, 1, 2, 4));
        vm.expectRevert(abi.encodeWithSelector(FederatedLedger.ApproverNotActive.selector, 3, members[4]));
        ledger.setThreshold(3, sigs);
    }

    function test_thresholdAboveActiveMembersRejected() public {
        bytes[] memory sigs = approveMembership(2, address(0), "", 6, list(0, 1, 2));
        vm.expectRevert(abi.encodeWithSelector(FederatedLedger.InvalidThreshold.selector, uint32(6), uint32(5)));
        ledger.setThreshold(6, sigs);
        sigs = approveMembership(2, address(0), "", 0, list(0, 1, 2));
        vm.expectRevert(abi.encodeWithSelector(FederatedLedger.InvalidThreshold.selector, uint32(0), uint32(5)));
        ledger.setThreshold(0, sigs);
    }

    function test_membershipApprovalsCannotBeReplayed() public {
        bytes[] memory sigs = approveMembership(2, address(0), "", 4, list(0, 1, 2));
        ledger.setThreshold(4, sigs);
        ledger.setThreshold(3, approveMembership(2, address(0), "", 3, list(0, 1, 2, 3)));
        // Same approvals again: the membership nonce has moved on, so they recover to other addresses.
        bytes4 sel = revertSelector(address(this), address(ledger), abi.encodeCall(FederatedLedger.setThreshold, (4, sigs)));
        vm.assertTrue(sel == FederatedLedger.ApproverNotActive.selector, "replayed membership approval refused");
        vm.assertEq(ledger.threshold(), 3, "k unchanged");
    }

    function test_approvalForOneChangeDoesNotAuthoriseAnother() public {
        address newcomer = vm.addr(0x2001);
        bytes[] memory sigs = approveMembership(0, newcomer, "hospital-f", 3, list(0, 1, 2));
        bytes4 sel = revertSelector(
            address(this),
            address(ledger),
            abi.encodeCall(FederatedLedger.addInstitution, (vm.addr(0x2002), "hospital-f", 3, sigs))
        );
        vm.assertTrue(sel == FederatedLedger.ApproverNotActive.selector, "other account refused");
        sel = revertSelector(
            address(this), address(ledger), abi.encodeCall(FederatedLedger.addInstitution, (newcomer, "hospital-g", 3, sigs))
        );
        vm.assertTrue(sel == FederatedLedger.ApproverNotActive.selector, "other sm9 id refused");
    }

    function test_sm9IdStaysBoundToItsAddress() public {
        address newcomer = vm.addr(0x2001);
        bytes[] memory sigs = approveMembership(0, newcomer, "hospital-a", 3, list(0, 1, 2));
        vm.expectRevert(abi.encodeWithSelector(FederatedLedger.Sm9IdTaken.selector, "hospital-a", members[0]));
        ledger.addInstitution(newcomer, "hospital-a", 3, sigs);
    }

    function test_removedInstitutionCanBeReactivated() public {
        ledger.removeInstitution(members[4], 3, approveMembership(1, members[4], "", 3, list(0, 1, 2)));
        ledger.addInstitution(members[4], "hospital-e", 3, approveMembership(0, members[4], "hospital-e", 3, list(0, 1, 2)));
        (address[] memory accounts,, bool[] memory active) = ledger.institutions();
        vm.assertEq(accounts.length, 5, "not registered twice");
        vm.assertTrue(active[4], "active again");
    }

    function test_setAggregator() public {
        address next = vm.addr(0x3001);
        ledger.setAggregator(next, approveMembership(3, next, "", 3, list(2, 3, 4)));
        vm.assertEq(ledger.aggregator(), next, "aggregator handed over");
        vm.expectRevert(abi.encodeWithSelector(FederatedLedger.NotAggregator.selector, aggregatorAccount));
        vm.prank(aggregatorAccount);
        ledger.openRound(0, BASE_CID, BASE_DIGEST);
    }

    function test_contractHelpersMatchHandWrittenEip712() public view {
        (uint64 postNonce, uint64 memberNonce) = ledger.nonces();
        vm.assertEq(
            ledger.globalModelApprovalDigest(model(7), SM9_SIG),
            globalModelDigest(address(ledger), model(7), SM9_SIG, postNonce),
            "global model digest"
        );
        vm.assertEq(
            ledger.membershipChangeApprovalDigest(0, members[1], "x", 2),
            membershipDigest(0, members[1], "x", 2, memberNonce),
            "membership digest"
        );
        vm.assertEq(ledger.domainSeparator(), domainOf(address(ledger)), "domain separator");
    }
}

contract FederatedLedgerRoundTest is LedgerFixture {
    function test_fullRoundThenNextRoundStartsFromPostedGlobal() public {
        openRound0();
        submitAs(0, 0);
        submitAs(1, 0);
        submitAs(2, 0);
        (, uint64 round, bool open, uint32 count) = ledger.roundState();
        vm.assertTrue(open && round == 0 && count == 3, "round 0 open with three updates");
        post(0, approveGlobal(0, list(0, 1, 2)));
        (,, open,) = ledger.roundState();
        vm.assertFalse(open, "posting closes the round");
        vm.assertEq(ledger.globalDigest(0), GLOBAL_DIGEST, "global digest stored");

        vm.prank(aggregatorAccount);
        vm.expectRevert(abi.encodeWithSelector(FederatedLedger.BaseModelMismatch.selector, 1, GLOBAL_DIGEST, BASE_DIGEST));
        ledger.openRound(1, BASE_CID, BASE_DIGEST);
        vm.prank(aggregatorAccount);
        ledger.openRound(1, GLOBAL_CID, GLOBAL_DIGEST);
        submitAs(0, 1); // a new round: the same institution may submit again
    }

    function test_roundsAreSequential() public {
        vm.prank(aggregatorAccount);
        vm.expectRevert(abi.encodeWithSelector(FederatedLedger.UnexpectedRound.selector, 1, 0));
        ledger.openRound(1, BASE_CID, BASE_DIGEST);
        openRound0();
        vm.prank(aggregatorAccount);
        vm.expectRevert(abi.encodeWithSelector(FederatedLedger.RoundStillOpen.selector, 0));
        ledger.openRound(1, BASE_CID, BASE_DIGEST);
        post(0, approveGlobal(0, list(0, 1, 2)));
        vm.prank(aggregatorAccount);
        vm.expectRevert(abi.encodeWithSelector(FederatedLedger.UnexpectedRound.selector, 2, 1));
        ledger.openRound(2, GLOBAL_CID, GLOBAL_DIGEST);
    }

    function test_onlyAggregatorOpensAndPosts() public {
        vm.prank(members[0]);
        vm.expectRevert(abi.encodeWithSelector(FederatedLedger.NotAggregator.selector, members[0]));
        ledger.openRound(0, BASE_CID, BASE_DIGEST);
        openRound0();
        bytes[] memory sigs = approveGlobal(0, list(0, 1, 2));
        FederatedLedger.GlobalModel memory m = model(0);
        vm.prank(members[0]);
        vm.expectRevert(abi.encodeWithSelector(FederatedLedger.NotAggregator.selector, members[0]));
        ledger.postGlobalModel(m, SM9_SIG, sigs);
    }

    function test_nonMemberSubmissionRejected() public {
        openRound0();
        address outsider = vm.addr(OUTSIDER_KEY);
        vm.prank(outsider);
        vm.expectRevert(abi.encodeWithSelector(FederatedLedger.NotActiveInstitution.selector, outsider));
        ledger.submitUpdate(0, UPDATE_CID, BASE_DIGEST, BASE_DIGEST, 1, 1_000_000, SM9_SIG);
        vm.prank(aggregatorAccount); // the aggregator is not an institution either
        vm.expectRevert(abi.encodeWithSelector(FederatedLedger.NotActiveInstitution.selector, aggregatorAccount));
        ledger.submitUpdate(0, UPDATE_CID, BASE_DIGEST, BASE_DIGEST, 1, 1_000_000, SM9_SIG);
    }

    function test_secondSubmissionInOneRoundRejected() public {
        openRound0();
        submitAs(3, 0);
        vm.prank(members[3]);
        vm.expectRevert(abi.encodeWithSelector(FederatedLedger.AlreadySubmitted.selector, 0, members[3]));
        ledger.submitUpdate(0, GLOBAL_CID, GLOBAL_DIGEST, BASE_DIGEST, 5, 250_000, SM9_SIG);
        (,,, uint32 count) = ledger.roundState();
        vm.assertEq(count, 1, "the first submission stands alone");
    }

    function test_submissionOnlyToTheOpenRound() public {
        vm.prank(members[0]);
        vm.expectRevert(abi.encodeWithSelector(FederatedLedger.RoundNotOpen.selector, 0));
        ledger.submitUpdate(0, UPDATE_CID, BASE_DIGEST, BASE_DIGEST, 1, 1_000_000, SM9_SIG);
        openRound0();
        vm.prank(members[0]);
        vm.expectRevert(abi.encodeWithSelector(FederatedLedger.RoundNotOpen.selector, 1));
        ledger.submitUpdate(1, UPDATE_CID, BASE_DIGEST, BASE_DIGEST, 1, 1_000_000, SM9_SIG);
        post(0, approveGlobal(0, list(0, 1, 2)));
        vm.prank(members[0]);
        vm.expectRevert(abi.encodeWithSelector(FederatedLedger.RoundNotOpen.selector, 0));
        ledger.submitUpdate(0, UPDATE_CID, BASE_DIGEST, BASE_DIGEST, 1, 1_000_000, SM9_SIG);
    }

    function test_submissionFieldsValidated() public {
        openRound0();
        vm.startPrank(members[0]);
        vm.expectRevert(abi.encodeWithSelector(FederatedLedger.InvalidCid.selector, 0));
        ledger.submitUpdate(0, "", BASE_DIGEST, BASE_DIGEST, 1, 1, SM9_SIG);
        vm.expectRevert(abi.encodeWithSelector(FederatedLedger.ZeroDigest.selector));
        ledger.submitUpdate(0, UPDATE_CID, bytes32(0), BASE_DIGEST, 1, 1, SM9_SIG);
        vm.expectRevert(abi.encodeWithSelector(FederatedLedger.ZeroDigest.selector));
        ledger.submitUpdate(0, UPDATE_CID, BASE_DIGEST, bytes32(0), 1, 1, SM9_SIG);
        vm.expectRevert(abi.encodeWithSelector(FederatedLedger.ZeroSamples.selector));
        ledger.submitUpdate(0, UPDATE_CID, BASE_DIGEST, BASE_DIGEST, 0, 1, SM9_SIG);
        vm.expectRevert(abi.encodeWithSelector(FederatedLedger.InvalidSm9Signature.selector, 0));
        ledger.submitUpdate(0, UPDATE_CID, BASE_DIGEST, BASE_DIGEST, 1, 1, "");
        vm.stopPrank();
    }

    function test_kMinusOneApprovalsRejected() public {
        openRound0();
        bytes[] memory sigs = approveGlobal(0, list(1, 4));
        FederatedLedger.GlobalModel memory m = model(0);
        vm.prank(aggregatorAccount);
        vm.expectRevert(abi.encodeWithSelector(FederatedLedger.NotEnoughApprovals.selector, 2, 3));
        ledger.postGlobalModel(m, SM9_SIG, sigs);
    }

    function test_duplicatedApproverCountedOnce() public {
        openRound0();
        bytes[] memory sigs = approveGlobal(0, list(2, 2, 3));
        FederatedLedger.GlobalModel memory m = model(0);
        vm.prank(aggregatorAccount);
        vm.expectRevert(abi.encodeWithSelector(FederatedLedger.NotEnoughApprovals.selector, 2, 3));
        ledger.postGlobalModel(m, SM9_SIG, sigs);

        // Duplicates are ignored rather than fatal: with three distinct approvers the post passes,
        // and the event lists each approver once.
        vm.recordLogs();
        post(0, approveGlobal(0, list(2, 3, 2, 4)));
        address[] memory approvers = _postedApprovers();
        vm.assertEq(approvers.length, 3, "distinct approvers");
        vm.assertEq(approvers[0], members[2], "first");
        vm.assertEq(approvers[1], members[3], "second");
        vm.assertEq(approvers[2], members[4], "third");
    }

    function test_nonMemberApprovalRejected() public {
        openRound0();
        bytes[] memory sigs = approveGlobal(0, list(0, 1, 2));
        (uint64 nonce,) = ledger.nonces();
        sigs[1] = signDigest(
            OUTSIDER_KEY,
            globalModelDigest(address(ledger), model(0), SM9_SIG, nonce)
        );
        FederatedLedger.GlobalModel memory m = model(0);
        vm.prank(aggregatorAccount);
        vm.expectRevert(abi.encodeWithSelector(FederatedLedger.ApproverNotActive.selector, 1, vm.addr(OUTSIDER_KEY)));
        ledger.postGlobalModel(m, SM9_SIG, sigs);
    }

    function test_approvalReplayedOnAnotherRoundRejected() public {
        openRound0();
        bytes[] memory round0 = approveGlobal(0, list(0, 1, 2));
        post(0, round0);
        vm.prank(aggregatorAccount);
        ledger.openRound(1, GLOBAL_CID, GLOBAL_DIGEST);
        bytes4 sel = revertSelector(aggregatorAccount, address(ledger), postCall(1, round0));
        vm.assertTrue(sel == FederatedLedger.ApproverNotActive.selector, "round-0 approvals refused in round 1");
    }

    function test_approvalReplayedOnAnotherContractRejected() public {
        address[] memory founders = new address[](5);
        string[] memory ids = new string[](5);
        for (uint256 i = 0; i < 5; ++i) {
            founders[i] = members[i];
            ids[i] = string(abi.encodePacked("hospital-", bytes1(uint8(0x61 + i))));
        }
        FederatedLedger twin = new FederatedLedger(aggregatorAccount, founders, ids, 3, 8_000_000, 10_000_000);
        vm.prank(aggregatorAccount);
        twin.openRound(0, BASE_CID, BASE_DIGEST);
        bytes[] memory forLedger = approveGlobal(0, list(0, 1, 2)); // signed for `ledger`
        bytes4 sel = revertSelector(aggregatorAccount, address(twin), postCall(0, forLedger));
        vm.assertTrue(sel == FederatedLedger.ApproverNotActive.selector, "approvals for another contract refused");
    }

    function test_approvalReplayedOnAnotherChainRejected() public {
        openRound0();
        bytes[] memory sigs = approveGlobal(0, list(0, 1, 2));
        vm.chainId(block.chainid + 1);
        bytes4 sel = revertSelector(aggregatorAccount, address(ledger), postCall(0, sigs));
        vm.assertTrue(sel == FederatedLedger.ApproverNotActive.selector, "approvals from another chain refused");
    }

    function test_approvalForAnotherRecordRejected() public {
        openRound0();
        bytes[] memory sigs = approveGlobal(0, list(0, 1, 2));
        FederatedLedger.GlobalModel memory other = model(0);
        other.digest = keccak256("a different model");
        vm.prank(aggregatorAccount);
        (bool ok,) = address(ledger).call(abi.encodeCall(FederatedLedger.postGlobalModel, (other, SM9_SIG, sigs)));
        vm.assertFalse(ok, "approvals of one digest do not authorise another");
        other = model(0);
        other.manifestDigest = keccak256("a different manifest");
        vm.prank(aggregatorAccount);
        (ok,) = address(ledger).call(abi.encodeCall(FederatedLedger.postGlobalModel, (other, SM9_SIG, sigs)));
        vm.assertFalse(ok, "approvals of one manifest do not authorise another");
    }

    function test_submissionAfterTheManifestMakesThePostRevert() public {
        openRound0();
        submitAs(0, 0);
        submitAs(1, 0);
        // The record (and its approvals) account for two entries; a third lands before the post.
        FederatedLedger.GlobalModel memory record = model(0);
        bytes[] memory sigs = approveGlobal(0, list(0, 1, 2));
        submitAs(2, 0);
        vm.prank(aggregatorAccount);
        vm.expectRevert(abi.encodeWithSelector(FederatedLedger.EntryCountMismatch.selector, 2, 3));
        ledger.postGlobalModel(record, SM9_SIG, sigs);
        (,, bool open,) = ledger.roundState();
        vm.assertTrue(open, "round still open: the aggregator redoes the manifest");
        post(0, approveGlobal(0, list(0, 1, 2)));
        vm.assertEq(ledger.globalDigest(0), GLOBAL_DIGEST, "posted once every entry is accounted for");
    }

    function test_malleableApprovalRejected() public {
        openRound0();
        bytes[] memory sigs = approveGlobal(0, list(0, 1, 2));
        bytes memory sig = sigs[0];
        bytes32 s;
        uint8 v;
        assembly {
            s := mload(add(sig, 64))
            v := byte(0, mload(add(sig, 96)))
        }
        uint256 n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141;
        bytes32 r;
        assembly {
            r := mload(add(sig, 32))
        }
        sigs[0] = abi.encodePacked(r, bytes32(n - uint256(s)), v == 27 ? uint8(28) : uint8(27));
        FederatedLedger.GlobalModel memory m = model(0);
        vm.prank(aggregatorAccount);
        vm.expectRevert(abi.encodeWithSelector(FederatedLedger.InvalidApprovalSignature.selector, 0));
        ledger.postGlobalModel(m, SM9_SIG, sigs);
    }

    function test_recordAccessByMembersOnly() public {
        vm.prank(members[1]);
        ledger.recordAccess(GLOBAL_CID, "local training, round 0");
        vm.prank(aggregatorAccount);
        ledger.recordAccess(UPDATE_CID, "aggregation, round 0");
        address outsider = vm.addr(OUTSIDER_KEY);
        vm.prank(outsider);
        vm.expectRevert(abi.encodeWithSelector(FederatedLedger.NotMember.selector, outsider));
        ledger.recordAccess(GLOBAL_CID, "curiosity");
        vm.prank(members[1]);
        vm.expectRevert(abi.encodeWithSelector(FederatedLedger.InvalidPurpose.selector, 0));
        ledger.recordAccess(GLOBAL_CID, "");
    }

    /// The approvers listed by the recorded GlobalModelPosted event.
    function _postedApprovers() private returns (address[] memory approvers) {
        Vm.Log[] memory logs = vm.getRecordedLogs();
        for (uint256 i = 0; i < logs.length; ++i) {
            if (logs[i].topics[0] == FederatedLedger.GlobalModelPosted.selector) {
                (,,,, approvers) =
                    abi.decode(logs[i].data, (FederatedLedger.GlobalModel, bytes, uint32, uint64, address[]));
                return approvers;
            }
        }
        revert("GlobalModelPosted not emitted");
    }
}

contract FederatedLedgerFuzzTest is LedgerFixture {
    /// Any multiset of member approvals passes exactly when it holds at least k distinct members.
    function testFuzz_approvalsPassIffKDistinct(uint8 a, uint8 b, uint8 c, uint8 d) public {
        openRound0();
        uint256[] memory idx = list(a % 5, b % 5, c % 5, d % 5);
        uint256 seen = 0;
        for (uint256 i = 0; i < 4; ++i) seen |= 1 << idx[i];
        uint256 distinct = 0;
        for (uint256 i = 0; i < 5; ++i) if (seen & (1 << i) != 0) ++distinct;
        bytes4 sel = revertSelector(aggregatorAccount, address(ledger), postCall(0, approveGlobal(0, idx)));
        if (distinct >= 3) {
            vm.assertTrue(sel == bytes4(0), "k distinct approvers pass");
            vm.assertEq(ledger.globalDigest(0), GLOBAL_DIGEST, "posted");
        } else {
            vm.assertTrue(sel == FederatedLedger.NotEnoughApprovals.selector, "fewer than k distinct fail");
        }
    }

    /// Approvals signed for any other round never authorise this one.
    function testFuzz_approvalBoundToRound(uint64 otherRound) public {
        vm.assume(otherRound != 0);
        openRound0();
        (uint64 nonce,) = ledger.nonces();
        bytes32 digest =
            globalModelDigest(address(ledger), model(otherRound), SM9_SIG, nonce);
        bytes[] memory sigs = new bytes[](3);
        for (uint256 i = 0; i < 3; ++i) sigs[i] = signDigest(keys[i], digest);
        bytes4 sel = revertSelector(aggregatorAccount, address(ledger), postCall(0, sigs));
        vm.assertTrue(sel == FederatedLedger.ApproverNotActive.selector, "other-round approvals refused");
    }

    /// Approvals signed for any other chain id never authorise this chain.
    function testFuzz_approvalBoundToChain(uint64 otherChain) public {
        vm.assume(otherChain != 0 && otherChain != block.chainid);
        openRound0();
        uint256 here = block.chainid;
        vm.chainId(otherChain);
        bytes[] memory sigs = approveGlobal(0, list(0, 1, 2));
        vm.chainId(here);
        bytes4 sel = revertSelector(aggregatorAccount, address(ledger), postCall(0, sigs));
        vm.assertTrue(sel == FederatedLedger.ApproverNotActive.selector, "other-chain approvals refused");
    }

    /// The width rate is accepted exactly on (0, 1_000_000] parts per million.
    function testFuzz_widthRateRange(uint32 widthRate) public {
        openRound0();
        bytes4 sel = revertSelector(
            members[0],
            address(ledger),
            abi.encodeCall(FederatedLedger.submitUpdate, (0, UPDATE_CID, BASE_DIGEST, BASE_DIGEST, 7, widthRate, SM9_SIG))
        );
        if (widthRate > 0 && widthRate <= 1_000_000) {
            vm.assertTrue(sel == bytes4(0), "valid width accepted");
        } else {
            vm.assertTrue(sel == FederatedLedger.InvalidWidthRate.selector, "invalid width refused");
        }
    }

    /// Non-members are refused whatever key they hold.
    function testFuzz_nonMemberCannotSubmit(uint256 key) public {
        key = 1 + (key % 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364140);
        address account = vm.addr(key);
        for (uint256 i = 0; i < 5; ++i) vm.assume(account != members[i]);
        openRound0();
        bytes4 sel = revertSelector(
            account,
            address(ledger),
            abi.encodeCall(FederatedLedger.submitUpdate, (0, UPDATE_CID, BASE_DIGEST, BASE_DIGEST, 7, 1, SM9_SIG))
        );
        vm.assertTrue(sel == FederatedLedger.NotActiveInstitution.selector, "non-member refused");
    }

    /// Each member may submit once per round, whichever order they come in.
    function testFuzz_oneSubmissionPerInstitutionPerRound(uint8 first, uint8 second) public {
        openRound0();
        uint256 i = first % 5;
        uint256 j = second % 5;
        submitAs(i, 0);
        bytes4 sel = revertSelector(
            members[j],
            address(ledger),
            abi.encodeCall(FederatedLedger.submitUpdate, (0, UPDATE_CID, BASE_DIGEST, BASE_DIGEST, 7, 1, SM9_SIG))
        );
        if (i == j) vm.assertTrue(sel == FederatedLedger.AlreadySubmitted.selector, "second submission refused");
        else vm.assertTrue(sel == bytes4(0), "another member may submit");
    }
}
