using FleetLearn.Core.Rounds;

namespace FleetLearn.Core.Tests.Rounds;

/// <summary>Secure FedBuff's group formation (Core, shared by the simulator and the aggregator) on a fake clock.</summary>
public sealed class SecureGroupFormationTests
{
    private static readonly DateTimeOffset T0 = new(2026, 1, 5, 8, 0, 0, TimeSpan.Zero);

    private static SecureGroupFormation<string> Formation(int size = 4, int concurrency = 8, GroupVersion version = GroupVersion.Formed, int minimum = 3) =>
        new(new SecureGroupRules { GroupSize = size, Concurrency = concurrency, MinimumMembers = minimum, FormationWindow = TimeSpan.FromMinutes(30), Version = version });

    [Fact]
    public void CheckIn_FullGroup_FormsOnTheVersionCurrentWhenItForms()
    {
        var f = Formation();
        Assert.Equal((AckStatus.Accepted, 1L), (f.CheckIn("a", 3, T0).Admission.Status, f.CheckIn("b", 3, T0.AddMinutes(1)).Group));
        Assert.Equal(T0.AddMinutes(30), f.FormationDue);
        Assert.Null(f.CheckIn("c", 4, T0.AddMinutes(2)).Formed);
        Assert.Equal(0, f.Training); // waiting members hold nothing
        var answer = f.CheckIn("d", 5, T0.AddMinutes(3));
        var group = Assert.IsType<FormedGroup<string>>(answer.Formed);
        Assert.Equal((1L, 5L, T0.AddMinutes(3)), (group.Id, group.Version, group.FormedAt));
        Assert.Equal(["a", "b", "c", "d"], group.Members);
        Assert.All(group.JoinedAt, j => Assert.Equal(T0.AddMinutes(3), j)); // all start training now
        Assert.Equal((4, 4, 2L), (f.Training, f.Held, f.FormingGroup));
        Assert.Empty(f.Forming);
        Assert.Null(f.FormationDue);
    }

    [Fact]
    public void CheckIn_FirstCheckIn_GroupKeepsTheFirstMembersVersion_MembersTrainFromTheirCheckIn()
    {
        var f = Formation(size: 3, version: GroupVersion.FirstCheckIn);
        f.CheckIn("a", 3, T0);
        Assert.Equal((1, 1), (f.Training, f.Held));
        f.CheckIn("b", 4, T0.AddMinutes(5));
        var group = f.CheckIn("c", 6, T0.AddMinutes(9)).Formed!;
        Assert.Equal(3, group.Version);
        Assert.Equal([T0, T0.AddMinutes(5), T0.AddMinutes(9)], group.JoinedAt);
    }

    [Fact]
    public void Tick_WindowPassedWithTheMinimum_FormsWithThoseItHas_ElseWaitsAnotherWindow()
    {
        var f = Formation(size: 10);
        f.CheckIn("a", 0, T0);
        f.CheckIn("b", 0, T0);
        Assert.Null(f.Tick(1, T0.AddMinutes(29)));
        Assert.Null(f.Tick(1, T0.AddMinutes(30))); // 2 < 3: another window
        Assert.Equal(T0.AddMinutes(60), f.FormationDue);
        f.CheckIn("c", 1, T0.AddMinutes(40));
        Assert.Null(f.Tick(2, T0.AddMinutes(59)));
        var group = f.Tick(2, T0.AddMinutes(60))!;
        Assert.Equal((3, 2L), (group.Members.Count, group.Version));
    }

    [Fact]
    public void CheckIn_ConcurrencyCountsWaitingAndTrainingMembers_NotThoseDoneTraining()
    {
        var f = Formation(size: 3, concurrency: 4);
        foreach (var v in new[] { "a", "b", "c" }) f.CheckIn(v, 0, T0); // formed: 3 training
        f.CheckIn("d", 0, T0); // waiting: counts
        var busy = f.CheckIn("e", 0, T0).Admission;
        Assert.Equal((AckStatus.Rejected, RejectReasons.Busy, "all 4 training slots are taken; check in later"), (busy.Status, busy.Reason, busy.Why));
        Assert.True(f.StopTraining("a")); // a sent its masked input: its slot is free, it stays in its group
        Assert.False(f.StopTraining("a"));
        Assert.Equal((2, 3), (f.Training, f.Held));
        Assert.Equal(AckStatus.Accepted, f.CheckIn("e", 0, T0).Admission.Status);
    }

    [Fact]
    public void CheckIn_MemberOfAnUnfinishedGroup_Busy_UntilItLeaves_AndAWaitingMemberIsAnsweredAgain()
    {
        var f = Formation(size: 3);
        foreach (var v in new[] { "a", "b", "c" }) f.CheckIn(v, 0, T0);
        f.StopTraining("a");
        var busy = f.CheckIn("a", 1, T0).Admission;
        Assert.Equal("still a member of an unfinished secure group; check in after it closes", busy.Why);
        f.CheckIn("d", 1, T0);
        Assert.Equal((AckStatus.Accepted, 2L), (f.CheckIn("d", 1, T0.AddMinutes(1)).Admission.Status, f.CheckIn("d", 1, T0.AddMinutes(2)).Group)); // a resent check-in
        Assert.Single(f.Forming);
        f.Leave("a");
        Assert.Equal(AckStatus.Accepted, f.CheckIn("a", 1, T0).Admission.Status);
        Assert.Equal("Vehicle z is not held by a group.", Assert.Throws<InvalidOperationException>(() => f.Leave("z")).Message);
    }

    [Fact]
    public void Withdraw_WaitingMember_LeavesTheFormingGroup_TrainingMemberStopsTraining()
    {
        var f = Formation(size: 3);
        f.CheckIn("a", 0, T0);
        Assert.True(f.Withdraw("a"));
        Assert.Empty(f.Forming);
        Assert.Null(f.FormationDue); // nobody left: no timer
        foreach (var v in new[] { "b", "c", "d" }) f.CheckIn(v, 0, T0);
        Assert.False(f.Withdraw("b")); // in a formed group: it drops out of training, the group counts it as dropped
        Assert.Equal((2, 3), (f.Training, f.Held));
        var first = Formation(size: 3, version: GroupVersion.FirstCheckIn);
        first.CheckIn("a", 0, T0);
        Assert.False(first.Withdraw("a")); // it trains from its check-in: it stays a (dropped) member
        Assert.Equal((0, 1, 1), (first.Training, first.Held, first.Forming.Count));
    }

    [Fact]
    public void Rules_BelowThreeMembers_Refused()
    {
        var e = Assert.Throws<ArgumentException>(() => Formation(minimum: 2));
        Assert.StartsWith("A secure-aggregation group needs at least 3 members.", e.Message);
    }
}
